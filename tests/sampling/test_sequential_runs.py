"""A sequential run decides on part of the golden set when the answer is clear, and only then."""

import numpy as np
import pytest

from evals.models import EvalRun, MetricSnapshot, Threshold
from evals.services import sampling
from evals.services.profiles import evaluation_profile_update
from evals.services.thresholds import threshold_save
from tests.sampling.conftest import CHUNK, MIN_SAMPLES, register, work


def sequential_run(artifact) -> EvalRun:
    return artifact.runs.get(kind="sequential")


def scored_positions(artifact) -> np.ndarray:
    return MetricSnapshot.objects.get(artifact=artifact, metric="bits_per_byte").arrays()[0]


def test_it_scores_the_first_artifact_in_full_and_says_why(baseline):
    run = sequential_run(baseline)

    assert run.sampling["stopped_early"] is False and "No production baseline" in run.sampling["disabled"]
    assert run.samples_done == run.samples_total == run.dataset.sample_count


@pytest.mark.parametrize("name, outcome", [("improved", "green"), ("drifted", "red")])
def test_it_stops_early_with_the_anytime_interval_around_the_full_set_delta(
    baseline, demo_imports, truth, name, outcome
):
    artifact = register(baseline.family, demo_imports[name], "b")

    (run,) = work()

    verdict = artifact.verdicts.get(metric="bits_per_byte")
    total = run.dataset.sample_count
    assert run.sampling["stopped_early"] and MIN_SAMPLES <= run.samples_done < total
    assert (verdict.outcome, verdict.stopped_early, verdict.samples_used, verdict.samples_total) == (
        outcome,
        True,
        run.samples_done,
        total,
    )
    stored = run.sampling["metrics"]["bits_per_byte"]
    assert (verdict.ci_low, verdict.ci_high) == (stored["ci_low"], stored["ci_high"])
    assert verdict.ci_low <= truth.delta(name) <= verdict.ci_high
    assert verdict.baseline_value == pytest.approx(_bpb(truth, "base"))
    assert len(scored_positions(artifact)) == run.samples_done


def _bpb(truth, name: str) -> float:
    return float(truth.nll_bits[name].sum() / truth.bytes.sum())


def test_the_recorded_seed_replays_the_same_order_and_stop(baseline, demo_imports):
    artifact = register(baseline.family, demo_imports["drifted"], "c", seed=None)  # halted: still a candidate
    (first,) = work()
    replay = EvalRun.objects.create(
        artifact=artifact, dataset=first.dataset, kind="sequential", sampling={"seed": first.sampling["seed"]}
    )
    other_seed = EvalRun.objects.create(
        artifact=artifact, dataset=first.dataset, kind="sequential", sampling={"seed": first.sampling["seed"] + 1}
    )

    again = sampling.score_sequential_run(run=replay, progress=lambda *args, **kwargs: None)
    other = sampling.score_sequential_run(run=other_seed, progress=lambda *args, **kwargs: None)

    assert again.sampling.to_json()["metrics"] == first.sampling["metrics"]
    assert np.array_equal(again.arrays["bits_per_byte"][0], scored_positions(artifact))
    assert again.forward_passes == 0 and again.cached_samples == first.samples_done
    assert not np.array_equal(other.arrays["bits_per_byte"][0], scored_positions(artifact))


def test_it_never_stops_before_the_minimum(baseline, demo_imports):
    family = baseline.family
    minimum = 3 * CHUNK + 1
    evaluation_profile_update(family=family, sampling_min_samples=minimum)
    artifact = register(family, demo_imports["drifted"], "d")

    (run,) = work()

    trace = run.sampling["metrics"]["bits_per_byte"]["trace"]
    already_red = [n for n, low, high in trace if high < -0.02]
    assert already_red[0] < minimum, "the interval was decisive before the minimum"
    assert minimum <= run.samples_done < minimum + CHUNK
    assert artifact.verdicts.get(metric="bits_per_byte").outcome == "red"


def test_an_interval_straddling_the_limit_keeps_scoring(baseline, demo_imports, truth):
    threshold = baseline.family.thresholds.get(metric="bits_per_byte")
    limit = -truth.delta("drifted")  # the drifted model's full-set delta sits right on the limit
    threshold.limit = limit
    threshold_save(threshold=threshold, user=None, reason="Limit at the candidate's delta")
    artifact = register(baseline.family, demo_imports["drifted"], "e")

    (run,) = work()

    trace = run.sampling["metrics"]["bits_per_byte"]["trace"]
    assert all(low <= -limit <= high for n, low, high in trace if n < run.dataset.sample_count)
    assert run.samples_done == run.dataset.sample_count and run.sampling["stopped_early"] is False
    assert not artifact.runs.filter(kind="completion").exists()


def test_an_incomparable_baseline_disables_sampling(baseline, demo_imports):
    family = baseline.family
    evaluation_profile_update(family=family, max_length=32)  # the baseline was scored with the model's own 64
    artifact = register(family, demo_imports["drifted"], "f")

    (run,) = work()

    assert "max_length" in run.sampling["disabled"] and run.sampling["stopped_early"] is False
    assert run.samples_done == run.dataset.sample_count
    assert artifact.verdicts.get(metric="bits_per_byte").outcome == "incomparable"


def test_a_ceiling_on_the_value_is_applied_as_a_limit_on_the_delta(baseline, demo_imports, truth):
    family = baseline.family
    family.thresholds.update(enabled=False)
    ceiling = 1.05 * _bpb(truth, "base")
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="bits_per_byte",
            rule="absolute",
            limit=ceiling,
            severity="block",
            rationale="Never ship above this",
        ),
        user=None,
        reason="Ceiling",
    )
    artifact = register(family, demo_imports["drifted"], "9")

    (run,) = work()

    verdict = artifact.verdicts.get(metric="bits_per_byte")
    assert run.sampling["metrics"]["bits_per_byte"]["block_limit"] == pytest.approx(0.05)
    assert run.sampling["stopped_early"] and verdict.outcome == "red" and "ceiling" in " ".join(verdict.reasons)
