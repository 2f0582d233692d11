"""A run's JSON fields read as typed records: stored shapes of every age read, and what is written reads back."""

import pytest

from driftboard.prices import prices_parse
from evals.run_records import JudgeCalls, JudgedBaseline, JudgeRunStats, Judging, SampledMetric, Sampling, Usage


def test_a_sequential_runs_stored_sampling_reads_as_a_record():
    stored = {
        "mode": "sequential",
        "seed": 7,
        "confidence": 0.95,
        "chunk_size": 32,
        "min_samples": 64,
        "samples_used": 96,
        "samples_total": 278,
        "stopped_early": True,
        "baseline_artifact": 3,
        "metrics": {"bits_per_byte": {"decision": "block", "ci_low": 0.01, "ci_high": None, "delta": 0.2}},
        "a_key_from_a_later_version": 1,
    }

    sampling = Sampling.from_json(stored)

    assert sampling.stopped_early and sampling.samples_used == 96 and sampling.seed == 7
    assert sampling.metrics["bits_per_byte"] == SampledMetric(decision="block", ci_low=0.01, ci_high=None, delta=0.2)
    assert Sampling.from_json(sampling.to_json()) == sampling
    assert "a_key_from_a_later_version" not in sampling.to_json()


@pytest.mark.parametrize("stored", [{}, None, {"seed": 5, "size": 2000, "positions": [1, 4]}, {"completes_run": 9}])
def test_older_and_smaller_sampling_records_read_and_write_back_unchanged(stored):
    assert Sampling.from_json(stored).to_json() == (stored or {})


def test_a_judge_run_record_keeps_its_baseline_stats_and_per_judge_calls():
    stored = {
        "model": {"sha256": "a" * 64},
        "scoring_run": 12,
        "baseline": {"artifact": 4, "version": 2, "answers": 30},
        "stats": {
            "calls": 60,
            "failures": 1,
            "retries": 2,
            "seconds": 3.5,
            "prompt_tokens": 900,
            "completion_tokens": 120,
            "slowest": 0.4,
            "judge_errors": 1,
            "by_judge": {"openai:http://j/v1|m": {"calls": 60, "prompt_tokens": 900, "completion_tokens": 120}},
        },
    }

    judging = Judging.from_json(stored)

    assert judging.baseline == JudgedBaseline(artifact=4, version=2, answers=30)
    assert judging.stats.by_judge["openai:http://j/v1|m"] == JudgeCalls(60, 900, 120)
    assert judging.to_json() == stored
    assert Judging.from_json({"baseline": {"skipped": "No baseline"}}).baseline.artifact is None
    assert Judging.from_json({}).stats is None and Judging.from_json({}).to_json() == {}


def test_judge_run_stats_round_trip():
    stats = JudgeRunStats(calls=3, by_judge={"local:x": JudgeCalls(3, 30, 3)})
    assert JudgeRunStats.from_json(stats.to_json()) == stats


def test_usage_prices_device_time_and_judge_tokens():
    prices = prices_parse('{"gpu_hour": {"*H100*": 4.0}, "judge_1k_tokens": {"gpt-*": {"prompt": 1, "completion": 2}}}')
    usage = Usage.from_json(
        {
            "device_kind": "NVIDIA H100 80GB HBM3",
            "worker_seconds": 1800,
            "judges": {"gpt-4o": {"calls": 2, "prompt_tokens": 3000, "completion_tokens": 500}},
            "samples_full": 100,
            "samples_scored": 40,
            "samples_cached": 10,
        }
    )

    assert usage.amount(prices) == pytest.approx(4.0 * 0.5 + 3.0 + 1.0)
    assert usage.judge_tokens == 3500 and usage.samples_computed == 30
    assert Usage.from_json(usage.to_json()) == usage
