"""Drift statistics against known truths: simulation, reference implementations and scipy."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from evals.scoring.drift import Comparison, ThresholdSpec, classify, compare, fingerprints_comparable
from evals.scoring.scorers import METRICS

BPB = METRICS["bits_per_byte"]
SIMILARITY = METRICS["similarity"]


def simulated_bpb(rng: np.random.Generator, n: int, *, shift: float, noise: float = 0.03):
    """Paired bits-per-byte scores whose population relative delta is −shift and candidate value
    is E[bpb]·(1 + shift), bytes and per-byte difficulty being independent lognormals."""
    n_bytes = np.maximum(1.0, np.round(rng.lognormal(math.log(400), 0.6, n)))
    base_bits = rng.lognormal(0.0, 0.3, n) * n_bytes
    cand_bits = base_bits * (1.0 + shift + noise * rng.standard_normal(n))
    true_candidate = math.exp(0.3**2 / 2) * (1.0 + shift)
    return cand_bits, n_bytes, base_bits, n_bytes, true_candidate


def threshold(rule: str, limit: float, severity: str, metric: str = "bits_per_byte") -> ThresholdSpec:
    return ThresholdSpec(id=f"{rule}-{severity}", version=1, metric=metric, rule=rule, limit=limit, severity=severity)


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    cand_num, cand_den, base_num, base_den, _ = simulated_bpb(np.random.default_rng(7), 300, shift=0.0)
    return compare(BPB, cand_num, cand_den, base_num, base_den, history=[1.0, 1.1, 0.9, 1.05], n_boot=200)


def test_it_recomputes_the_ratio_of_sums_in_every_resample():
    rng = np.random.default_rng(1)
    # Long texts get 10 % worse, short ones 50 % better: per-sample ratios average to "better",
    # the ratio of sums (what the metric is) says "worse".
    long_text = np.arange(400) % 2 == 0
    den = np.where(long_text, 1000.0, 10.0)
    base_num = den * (1.0 + 0.01 * rng.standard_normal(400))
    cand_num = base_num * np.where(long_text, 1.10, 0.50)
    c = compare(BPB, cand_num, den, base_num, den)

    ratio_of_sums_delta = (base_num.sum() / den.sum() - cand_num.sum() / den.sum()) / (base_num.sum() / den.sum())
    mean_of_ratios_delta = (np.mean(base_num / den) - np.mean(cand_num / den)) / np.mean(base_num / den)
    assert mean_of_ratios_delta > 0.1 > -0.05 > ratio_of_sums_delta
    assert c.delta == pytest.approx(ratio_of_sums_delta)
    assert c.ci_low <= ratio_of_sums_delta <= c.ci_high
    assert c.ci_high < 0
    assert c.cand_ci_low <= cand_num.sum() / den.sum() <= c.cand_ci_high


def test_it_matches_a_plain_loop_bootstrap():
    rng = np.random.default_rng(2)
    cand_num, cand_den, base_num, base_den, _ = simulated_bpb(rng, 150, shift=0.02)
    c = compare(BPB, cand_num, cand_den, base_num, base_den, n_boot=4000, seed=3)

    deltas = []
    for _ in range(4000):
        i = rng.integers(0, 150, 150)
        base = base_num[i].sum() / base_den[i].sum()
        deltas.append((base - cand_num[i].sum() / cand_den[i].sum()) / base)
    reference_low, reference_high = np.quantile(deltas, [0.025, 0.975])

    tolerance = 0.1 * (reference_high - reference_low)
    assert c.ci_low == pytest.approx(reference_low, abs=tolerance)
    assert c.ci_high == pytest.approx(reference_high, abs=tolerance)


def test_it_covers_the_true_values_about_95_percent_of_the_time():
    rng = np.random.default_rng(4)
    trials, delta_hits, value_hits = 300, 0, 0
    for trial in range(trials):
        cand_num, cand_den, base_num, base_den, true_candidate = simulated_bpb(rng, 200, shift=0.02)
        c = compare(BPB, cand_num, cand_den, base_num, base_den, n_boot=500, seed=trial)
        delta_hits += c.ci_low <= -0.02 <= c.ci_high
        value_hits += c.cand_ci_low <= true_candidate <= c.cand_ci_high
    assert 0.90 <= delta_hits / trials <= 0.985
    assert 0.90 <= value_hits / trials <= 0.985


def test_it_gives_uniform_p_values_when_nothing_changed():
    rng = np.random.default_rng(5)
    p_values = [compare(BPB, *simulated_bpb(rng, 200, shift=0.0)[:4], n_boot=1).p_value for _ in range(400)]
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09
    assert stats.kstest(p_values, "uniform").pvalue > 0.001
    assert compare(BPB, *simulated_bpb(rng, 200, shift=0.03)[:4], n_boot=1).p_value < 1e-6


def test_it_places_the_candidate_in_the_band_of_past_values():
    history = [1.00, 1.02, 0.98, 1.01, 0.99]
    cand_num, cand_den = np.array([1.06, 1.06]), np.array([1.0, 1.0])
    c = compare(BPB, cand_num, cand_den, np.ones(2), np.ones(2), history=history, band_k=2.0, n_boot=10)

    sigma = np.std(history, ddof=1)
    assert c.band_low == pytest.approx(np.mean(history) - 2.0 * sigma)
    assert c.band_high == pytest.approx(np.mean(history) + 2.0 * sigma)
    assert c.band_position == pytest.approx((1.06 - np.mean(history)) / sigma)


def test_it_uses_median_and_mad_when_robust():
    history = [1.00, 1.02, 0.98, 1.01, 0.99, 1.60]
    c = compare(BPB, np.ones(3), np.ones(3), np.ones(3), np.ones(3), history=history, robust=True, n_boot=10)

    scale = stats.median_abs_deviation(history, scale="normal")
    assert scale == pytest.approx(1.4826 * np.median(np.abs(np.array(history) - np.median(history))), rel=1e-4)
    assert c.band_low == pytest.approx(np.median(history) - 3.0 * scale)
    assert c.band_high == pytest.approx(np.median(history) + 3.0 * scale)
    assert c.band_position == pytest.approx((1.0 - np.median(history)) / scale)


def test_it_has_no_band_under_three_past_values():
    c = compare(BPB, np.ones(3), np.ones(3), np.ones(3), np.ones(3), history=[1.0, 1.1], n_boot=10)
    assert c.band is None and c.band_low is None and c.band_position is None


def test_it_measures_distribution_shift_like_scipy():
    cand_num, cand_den, base_num, base_den, _ = simulated_bpb(np.random.default_rng(6), 300, shift=0.05)
    c = compare(BPB, cand_num, cand_den, base_num, base_den, n_boot=10)

    cand_ratio, base_ratio = cand_num / cand_den, base_num / base_den
    assert c.ks == pytest.approx(stats.ks_2samp(cand_ratio, base_ratio).statistic)
    expected = stats.wasserstein_distance(cand_ratio, base_ratio) / np.std(base_ratio, ddof=1)
    assert c.wasserstein == pytest.approx(expected)


def test_it_breaks_the_delta_down_by_category():
    cand_num, cand_den, base_num, base_den, _ = simulated_bpb(np.random.default_rng(8), 90, shift=0.02)
    categories = np.array(["code", "prose", "dialogue"] * 30)
    c = compare(BPB, cand_num, cand_den, base_num, base_den, categories=categories, n_boot=10)

    code = categories == "code"
    base = base_num[code].sum() / base_den[code].sum()
    assert c.per_category["code"]["n"] == 30
    assert c.per_category["code"]["baseline"] == pytest.approx(base)
    assert c.per_category["code"]["delta"] == pytest.approx((base - cand_num[code].sum() / cand_den[code].sum()) / base)


def test_it_signs_the_delta_so_that_negative_means_worse():
    worse_similarity = compare(SIMILARITY, np.full(5, 0.7), np.ones(5), np.full(5, 0.8), np.ones(5), n_boot=10)
    worse_perplexity = compare(
        METRICS["perplexity"], np.full(5, 3.0), np.ones(5), np.full(5, 2.0), np.ones(5), n_boot=10
    )
    assert worse_similarity.delta == pytest.approx(-0.125)
    assert worse_perplexity.delta == pytest.approx((math.exp(2) - math.exp(3)) / math.exp(2))


def test_it_refuses_arrays_that_are_not_paired():
    with pytest.raises(ValueError, match="length"):
        compare(BPB, np.ones(5), np.ones(5), np.ones(4), np.ones(4))


def test_it_is_red_when_the_interval_lies_beyond_a_block_limit(comparison):
    worse = dataclasses.replace(comparison, delta=-0.031, ci_low=-0.039, ci_high=-0.024)
    verdict = classify(worse, [threshold("relative", 0.02, "block")])
    assert verdict.outcome == "red"
    assert verdict.threshold.id == "relative-block"
    assert verdict.reasons[0] == "bits per byte worse by 3.1 % (95 % CI 2.4 – 3.9 %), beyond the 2 % block limit"


def test_it_is_amber_when_the_interval_straddles_a_block_limit(comparison):
    straddling = dataclasses.replace(comparison, delta=-0.025, ci_low=-0.035, ci_high=-0.015)
    verdict = classify(straddling, [threshold("relative", 0.02, "block")])
    assert verdict.outcome == "amber"
    assert "straddles" in verdict.reasons[0]


def test_it_is_amber_at_most_when_a_warn_limit_is_crossed(comparison):
    worse = dataclasses.replace(comparison, delta=-0.05, ci_low=-0.06, ci_high=-0.04)
    assert classify(worse, [threshold("relative", 0.02, "warn")]).outcome == "amber"


def test_it_is_green_within_every_limit(comparison):
    better = dataclasses.replace(comparison, delta=0.01, ci_low=0.0, ci_high=0.02)
    verdict = classify(better, [threshold("relative", 0.02, "block"), threshold("relative", 0.01, "warn")])
    assert verdict.outcome == "green" and verdict.threshold is None
    assert verdict.reasons[0].startswith("bits per byte better by 1.0 %")


def test_it_takes_the_most_severe_threshold_and_ignores_other_metrics(comparison):
    worse = dataclasses.replace(comparison, delta=-0.05, ci_low=-0.06, ci_high=-0.04)
    thresholds = [
        threshold("relative", 0.01, "warn"),
        threshold("relative", 0.02, "block"),
        threshold("relative", 0.001, "block", metric="perplexity"),
    ]
    verdict = classify(worse, thresholds)
    assert verdict.outcome == "red" and verdict.threshold.id == "relative-block"
    assert len(verdict.reasons) == 2


def test_it_applies_an_absolute_ceiling_with_the_candidate_interval(comparison):
    ceiling = [threshold("absolute", 1.2, "block")]
    above = dataclasses.replace(comparison, candidate=1.30, cand_ci_low=1.25, cand_ci_high=1.35)
    straddling = dataclasses.replace(comparison, candidate=1.22, cand_ci_low=1.18, cand_ci_high=1.26)
    below = dataclasses.replace(comparison, candidate=1.10, cand_ci_low=1.05, cand_ci_high=1.15)
    assert classify(above, ceiling).outcome == "red"
    assert classify(straddling, ceiling).outcome == "amber"
    assert classify(below, ceiling).outcome == "green"


def test_it_applies_an_absolute_floor_to_higher_is_better_metrics(comparison):
    similarity = dataclasses.replace(comparison, spec=SIMILARITY, candidate=0.70, cand_ci_low=0.68, cand_ci_high=0.72)
    floor = [threshold("absolute", 0.75, "block", metric="similarity")]
    assert classify(similarity, floor).outcome == "red"
    assert classify(dataclasses.replace(similarity, candidate=0.80, cand_ci_low=0.78), floor).outcome == "green"


def test_it_flags_a_value_that_leaves_the_band_on_the_worse_side(comparison):
    band = comparison.band
    above = dataclasses.replace(comparison, candidate=band.center + 4 * band.scale, cand_ci_low=band.center)
    below = dataclasses.replace(comparison, candidate=band.center - 4 * band.scale)
    assert classify(above, [threshold("band", 3.0, "warn")]).outcome == "amber"
    assert "outside the 3σ band" in classify(above, [threshold("band", 3.0, "warn")]).reasons[0]
    assert classify(below, [threshold("band", 3.0, "warn")]).outcome == "green"
    far_above = dataclasses.replace(above, cand_ci_low=band.center + 3.5 * band.scale)
    assert classify(far_above, [threshold("band", 3.0, "block")]).outcome == "red"


def test_it_says_so_when_there_is_no_band_yet(comparison):
    verdict = classify(dataclasses.replace(comparison, band=None), [threshold("band", 3.0, "block")])
    assert verdict.outcome == "green"
    assert any("no bits per byte band yet" in reason for reason in verdict.reasons)


def test_it_lists_the_fingerprint_keys_that_differ():
    a = {"dataset_sha256": "d1", "tokenizer_hash": "t1", "scorer_version": "1", "max_length": 512}
    assert fingerprints_comparable(a, dict(a)) == (True, [])
    b = dict(a, tokenizer_hash="t2", max_length=1024)
    assert fingerprints_comparable(a, b) == (False, ["tokenizer_hash", "max_length"])
    assert fingerprints_comparable(a, b, spec=BPB) == (False, ["max_length"])
    missing = {k: v for k, v in a.items() if k != "scorer_version"}
    assert fingerprints_comparable(a, missing) == (False, ["scorer_version"])
