"""The `evaluate` command as a user runs it: a subprocess, stdout holding one JSON object."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def evaluate(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DRIFTBOARD_EMBEDDED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "manage.py", "evaluate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_it_prints_one_json_object_with_the_comparison(demo_build):
    result = evaluate(
        "--weights",
        str(demo_build.drifted),
        "--subset",
        str(demo_build.golden),
        "--baseline",
        str(demo_build.base),
        "--limit",
        "40",
        "--json",
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {
        "metrics",
        "per_category",
        "samples",
        "tokens_per_second",
        "forward_passes",
        "fingerprint",
        "comparison",
    }
    metrics = report["metrics"]
    assert set(metrics) == {"bits_per_byte", "perplexity", "nll_sum", "tokens", "bytes"}
    assert report["samples"] == 40
    assert abs(metrics["bits_per_byte"] - metrics["nll_sum"] / (0.6931471805599453 * metrics["bytes"])) < 1e-9
    assert sum(c["samples"] for c in report["per_category"].values()) == 40
    assert report["comparison"]["bits_per_byte"]["delta"] < 0  # the drifted model is worse
    assert report["fingerprint"]["dataset_sha256"]
    assert "sample" in result.stderr  # the progress bar went to stderr


def test_it_prints_a_readable_table_by_default(demo_build):
    result = evaluate("--weights", str(demo_build.base), "--subset", str(demo_build.golden), "--limit", "10")

    assert result.returncode == 0, result.stderr
    assert "bits_per_byte" in result.stdout and "10 samples" in result.stdout


def test_it_explains_a_bad_golden_file(tmp_path, demo_build):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "no text column"}\n')

    result = evaluate("--weights", str(demo_build.base), "--subset", str(bad))

    assert result.returncode != 0
    assert "text" in result.stderr and result.stdout == ""
