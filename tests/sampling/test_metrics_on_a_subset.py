"""A gated metric that applies to only some samples (an answer check: those with a prompt) is followed
on its own samples, in the run's order restricted to them, beside bits per byte on all of them."""

import math
import shutil

import numpy as np
import pytest

from evals.models import EvalRun, MetricSnapshot, Threshold
from evals.scoring.scorers import METRICS
from evals.scoring.sequential import SequentialMonitor, design_weights, sampling_order
from evals.services import dataset_import, sampling
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from tests.sampling.conftest import CHUNK, MIN_SAMPLES, register, work

ANSWER = "contains_reference"


@pytest.fixture
def twin(demo_imports):
    """The base model's weights under another hash (one extra file): an identical candidate."""
    folder = demo_imports["base"].parent / "demo-twin"
    if not folder.exists():
        shutil.copytree(demo_imports["base"], folder)
        (folder / "README.md").write_text("The base model, again.\n")
    return folder


@pytest.fixture
def baseline(db, broker, demo_build, demo_imports):
    """The base model on likelihood and short answers, scored in full and made the baseline."""
    dataset_import(name="demo-golden", filename="golden.jsonl", source=demo_build.golden)
    family = family_create(
        slug="answered",
        kind="causal-lm",
        base_path=str(demo_build.base),
        datasets=["demo-golden"],
        scorers=["causal-nll", "answer-checks"],
        generation={"max_new_tokens": 4},
        sampling="sequential",
        sampling_min_samples=MIN_SAMPLES,
        sampling_chunk_size=CHUNK,
    )
    threshold_save(
        threshold=Threshold(
            family=family, metric=ANSWER, rule="relative", limit=0.05, severity="block", rationale="Answer on"
        ),
        user=None,
        reason="Gate an answer metric",
    )
    artifact = register(family, demo_imports["base"], "a")
    work()
    artifact.refresh_from_db()
    assert artifact.stage == "production"
    return artifact


def prompted(run: EvalRun) -> np.ndarray:
    return np.array(sorted(run.dataset.samples.exclude(prompt="").values_list("position", flat=True)))


def positions(artifact, metric: str) -> np.ndarray:
    return MetricSnapshot.objects.get(artifact=artifact, metric=metric).arrays()[0]


@pytest.mark.parametrize("name, outcome", [("twin", "green"), ("drifted", "red")])
def test_each_gate_counts_its_own_samples_and_the_run_stops_early(baseline, demo_imports, twin, name, outcome):
    path = twin if name == "twin" else demo_imports[name]
    artifact = register(baseline.family, path, "b")

    (run,) = work()

    gates, with_prompt = run.sampling["metrics"], prompted(run)
    assert run.sampling["stopped_early"] and "disabled" not in run.sampling
    assert (gates["bits_per_byte"]["samples_used"], gates["bits_per_byte"]["samples_total"]) == (
        run.samples_done,
        run.dataset.sample_count,
    )
    answered = positions(artifact, ANSWER)
    assert np.isin(answered, with_prompt).all()
    assert (gates[ANSWER]["samples_used"], gates[ANSWER]["samples_total"]) == (len(answered), len(with_prompt))
    assert MIN_SAMPLES <= len(answered) < len(with_prompt)
    assert len(answered) == np.isin(positions(artifact, "bits_per_byte"), with_prompt).sum()
    assert gates[ANSWER]["decision"] in ("green", "red")
    verdict = artifact.verdicts.get(metric=ANSWER)
    assert (verdict.samples_used, verdict.samples_total) == (len(answered), len(with_prompt))
    assert artifact.verdicts.get(metric="bits_per_byte").outcome == outcome
    if name == "twin":
        assert gates[ANSWER]["ci_low"] <= 0.0 == gates[ANSWER]["delta"] <= gates[ANSWER]["ci_high"]


def test_the_recorded_seed_replays_the_stop_and_the_completion_fills_the_rest(baseline, demo_imports):
    artifact = register(baseline.family, demo_imports["drifted"], "c", seed=None)
    (first,) = work()
    replay = EvalRun.objects.create(
        artifact=artifact, dataset=first.dataset, kind="sequential", sampling={"seed": first.sampling["seed"]}
    )

    again = sampling.score_sequential_run(run=replay, progress=lambda *args, **kwargs: None)

    assert again.sampling.to_json()["metrics"] == first.sampling["metrics"]
    assert np.array_equal(again.arrays[ANSWER][0], positions(artifact, ANSWER))
    replay.delete()  # the off-peak queue waits while a scoring run is open
    (completion,) = work("offpeak")
    assert (completion.status, completion.samples_done) == ("succeeded", first.samples_total - first.samples_done)
    assert np.array_equal(positions(artifact, ANSWER), prompted(first))
    assert np.array_equal(positions(artifact, "bits_per_byte"), np.arange(first.dataset.sample_count))
    verdict = artifact.verdicts.get(metric=ANSWER)
    assert (verdict.stopped_early, verdict.samples_used) == (False, len(prompted(first)))


def test_the_interval_on_a_subset_covers_its_own_delta_at_all_times():
    """On the run's order restricted to a subset, sized by another metric (the main one), the
    confidence sequence covers the subset's delta at every chunk, as often as promised."""
    rng, spec, confidence = np.random.default_rng(11), METRICS["bits_per_byte"], 0.8
    paths, covered = 120, 0
    for path in range(paths):
        n = 240
        categories = np.array(["prose", "code", "dialogue"])[rng.integers(0, 3, n)]
        size = rng.lognormal(math.log(300), 0.6, n)
        members = np.flatnonzero(rng.random(n) < 0.4)
        den = np.round(rng.lognormal(math.log(50), 0.5, len(members))) + 1.0
        base = den * rng.lognormal(0.0, 0.3, len(members))
        cand = base * np.maximum(1.0 + rng.normal(0, 0.03) + 0.1 * rng.standard_t(5, len(members)), 0.0)
        truth = (base.sum() - cand.sum()) / base.sum()
        weights = design_weights(spec, size, size)
        monitor = SequentialMonitor(
            spec,
            base,
            den,
            sampling_order(categories, path, weights=weights),
            categories=categories,
            weights=weights,
            confidence=confidence,
            min_samples=1,
            applies_to=members,
        )
        intervals = [monitor.update(cand[chunk], den[chunk]) for chunk in np.array_split(monitor.order, 12)]
        covered += all(i.low - 1e-12 <= truth <= i.high + 1e-12 for i in intervals)
        assert intervals[-1].low == pytest.approx(truth, abs=1e-12)
    assert covered / paths >= confidence
