"""The interval archived with every metric value: a percentile bootstrap of the ratio of sums, checked
against scipy's percentile bootstrap and by its coverage of a known truth in simulation."""

import numpy as np
from scipy import stats

from evals.scoring.scorers import METRICS
from evals.scoring.summary import bootstrap_ci


def test_a_mean_s_interval_is_scipy_s_percentile_bootstrap():
    rng = np.random.default_rng(11)
    values = rng.normal(0.6, 0.2, size=300)
    low, high = bootstrap_ci(METRICS["answer_similarity"], values, np.ones_like(values), n_boot=20_000, seed=3)
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=20_000, method="percentile", random_state=np.random.default_rng(4)
    ).confidence_interval
    width = reference.high - reference.low
    assert abs(low - reference.low) < 0.03 * width and abs(high - reference.high) < 0.03 * width


def test_a_ratio_of_sums_interval_covers_the_truth_about_95_percent_of_the_time():
    # Bits per byte: Σ nats / (ln 2 · Σ bytes) over samples of varying length; the truth is the
    # population ratio, known here by construction.
    rng = np.random.default_rng(7)
    spec = METRICS["bits_per_byte"]
    true_ratio = 1.3
    covered, trials = 0, 400
    for _ in range(trials):
        byte_counts = rng.integers(50, 400, size=120).astype(float)
        nats = rng.gamma(shape=4.0, scale=true_ratio * np.log(2) * byte_counts / 4.0)
        low, high = bootstrap_ci(
            spec, nats * spec.numerator_scale, byte_counts, n_boot=1000, seed=int(rng.integers(1 << 30))
        )
        covered += low <= true_ratio <= high
    # 95 % nominal; a percentile bootstrap at n = 120 runs slightly narrow. Binomial sd at 400 trials ≈ 1.1 %.
    assert 0.91 <= covered / trials <= 0.985, covered / trials


def test_the_same_seed_gives_the_same_interval_and_a_single_sample_its_value():
    values = np.arange(10, dtype=float)
    spec = METRICS["answer_similarity"]
    ones = np.ones_like(values)
    assert bootstrap_ci(spec, values, ones, n_boot=500, seed=1) == bootstrap_ci(spec, values, ones, n_boot=500, seed=1)
    assert bootstrap_ci(spec, values[:1], ones[:1], n_boot=500) == (0.0, 0.0)
