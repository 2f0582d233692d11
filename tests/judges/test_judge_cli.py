"""`manage.py evaluate --generate` with a judge, as a user runs it: the JSON carries
metrics.judge_score, comparison.judge_preference and judge_calls (0 on a re-run), pairwise needs a
baseline, the API key comes from the environment only and never shows, and the local judge works."""

import json
from pathlib import Path

import pytest

from tests.generation.test_cli_generate import evaluate
from tests.judges.conftest import ok

SECRET = "sk-cli-secret-5f0e1d2c3b4a"


@pytest.fixture
def prompt_file(demo_build, tmp_path) -> Path:
    rows = []
    for line in demo_build.golden.read_text().splitlines()[:6]:
        words = json.loads(line)["text"].split()
        rows.append({"id": f"p{len(rows)}", "prompt": " ".join(words[:8]), "reference": " ".join(words[8:16])})
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def generate_args(demo_build, prompt_file, tmp_path, *extra: str) -> list[str]:
    return [
        "--weights",
        str(demo_build.drifted),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        "8",
        "--judge-cache",
        str(tmp_path / "judgements.sqlite3"),
        "--json",
        *extra,
    ]


def test_pairwise_judging_reports_the_preference_and_reuses_the_cache(judge_server, demo_build, prompt_file, tmp_path):
    judge_server.replier = lambda body, n: ok("The first. [[A]]")
    args = generate_args(
        demo_build,
        prompt_file,
        tmp_path,
        "--baseline",
        str(demo_build.base),
        "--judge-url",
        judge_server.url,
        "--judge-model",
        "judge-test",
        "--judge-mode",
        "pairwise",
    )
    result = evaluate(*args, DRIFTBOARD_JUDGE_API_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    preference = report["comparison"]["judge_preference"]
    assert set(preference) == {"delta", "ci_low", "ci_high", "outcome", "samples", "errors"}
    assert preference["samples"] == 6 and preference["errors"] == 0 and preference["outcome"] == "green"
    assert report["judge_calls"] == 12 == judge_server.calls
    assert {h["Authorization"] for h in judge_server.headers} == {f"Bearer {SECRET}"}
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert SECRET not in (tmp_path / "judgements.sqlite3").read_bytes().decode("utf-8", "replace")
    again = evaluate(*args, DRIFTBOARD_JUDGE_API_KEY=SECRET)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["judge_calls"] == 0 and judge_server.calls == 12


def test_pointwise_judging_reports_the_judge_score(judge_server, demo_build, prompt_file, tmp_path):
    judge_server.replier = lambda body, n: ok("Rating: [[7]]" if n % 3 else "Rating: [[3]]")
    result = evaluate(
        *generate_args(demo_build, prompt_file, tmp_path, "--judge-url", judge_server.url, "--judge-model", "j"),
        "--rubric",
        "Only fluency matters.",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 3 <= report["metrics"]["judge_score"] <= 7 and report["judge_calls"] == 6
    assert "Only fluency matters." in judge_server.requests[0]["messages"][-1]["content"]
    assert report["judge"]["rubric"] == "Only fluency matters." and report["judge"]["template"] == 1


def test_pairwise_needs_a_baseline(judge_server, demo_build, prompt_file, tmp_path):
    result = evaluate(
        *generate_args(demo_build, prompt_file, tmp_path, "--judge-url", judge_server.url, "--judge-model", "j"),
        "--judge-mode",
        "pairwise",
    )
    assert result.returncode != 0 and "--baseline" in result.stderr and judge_server.calls == 0


def test_the_local_judge_rates_the_answers(demo_build, prompt_file, tmp_path):
    result = evaluate(*generate_args(demo_build, prompt_file, tmp_path, "--judge-local", str(demo_build.base)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 1 <= report["metrics"]["judge_score"] <= 10 and report["judge_errors"] == 0
    assert report["judge"]["judge"].startswith("local:")
