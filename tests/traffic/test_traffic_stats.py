"""The traffic statistics against scipy and hand calculations on known arrays, and by simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from evals.scoring import traffic


def test_it_reports_welch_ks_and_wasserstein_as_scipy_computes_them():
    rng = np.random.default_rng(1)
    ref, win = rng.normal(1.0, 0.2, 400), rng.normal(1.05, 0.25, 300)
    c = traffic.compare_traffic(ref, win, n_boot=500)
    assert c.shift == pytest.approx(win.mean() - ref.mean())
    assert c.shift_p_value == pytest.approx(stats.ttest_ind(win, ref, equal_var=False).pvalue)
    assert c.ks == pytest.approx(stats.ks_2samp(ref, win).statistic)
    assert c.ks_p_value == pytest.approx(stats.ks_2samp(ref, win).pvalue)
    assert c.wasserstein_sigma == pytest.approx(stats.wasserstein_distance(ref, win) / ref.std(ddof=1))
    assert c.shift_sigma == pytest.approx(c.shift / ref.std(ddof=1))
    assert c.mean_ci_low < win.mean() < c.mean_ci_high
    assert c.shift_ci_low < c.shift < c.shift_ci_high


def test_it_computes_the_wasserstein_distance_as_the_area_between_the_cdfs():
    ref, win = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 1.5, 2.5, 3.5, 10.0])
    grid = np.sort(np.concatenate([ref, win]))
    cdf = lambda x, t: np.searchsorted(np.sort(x), t, side="right") / len(x)  # noqa: E731
    area = sum(abs(cdf(ref, a) - cdf(win, a)) * (b - a) for a, b in zip(grid[:-1], grid[1:], strict=True))
    c = traffic.compare_traffic(ref, win, n_boot=10)
    assert c.wasserstein == pytest.approx(area)


def test_it_computes_psi_and_chi2_of_the_category_mix_by_hand():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    win = ["a"] * 20 + ["b"] * 30 + ["c"] * 40 + ["d"] * 10
    mix = traffic.category_mix(ref, win)
    p = np.array([0.5, 0.3, 0.2, traffic.PSI_EPSILON])
    q = np.array([0.2, 0.3, 0.4, 0.1])
    assert mix["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    table = np.array([[50, 30, 20, 0], [20, 30, 40, 10]])
    expected = table.sum(1, keepdims=True) * table.sum(0) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    assert mix["chi2"] == pytest.approx(chi2)
    assert mix["chi2_p_value"] == pytest.approx(stats.chi2.sf(chi2, df=3))
    assert mix["new_categories"] == ["d"]
    assert mix["new_category_share"] == pytest.approx(0.1)
    grew = [s.category for s in mix["categories"]]
    assert grew[0] == "c" and grew[-1] == "a"


def test_it_gives_psi_zero_for_the_same_mix():
    assert traffic.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_it_covers_the_true_mean_shift_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    reps = 300
    for seed in range(reps):
        ref, win = rng.exponential(1.0, 300), rng.exponential(1.0, 200) + 0.1
        c = traffic.compare_traffic(ref, win, n_boot=400, seed=seed)
        covered += c.shift_ci_low <= 0.1 <= c.shift_ci_high
    assert 0.90 <= covered / reps <= 0.99


def test_it_keeps_windows_from_the_reference_green_and_moved_ones_red():
    rng = np.random.default_rng(3)
    outcomes = []
    for seed in range(100):
        ref, win = rng.lognormal(0, 0.3, 1000), rng.lognormal(0, 0.3, 1000)
        outcomes.append(traffic.classify_traffic(traffic.compare_traffic(ref, win, n_boot=50, seed=seed)).outcome)
    assert outcomes.count("red") <= 2
    ref, win = rng.lognormal(0, 0.3, 1000), rng.lognormal(0, 0.3, 1000) * 1.1
    verdict = traffic.classify_traffic(traffic.compare_traffic(ref, win, n_boot=50))
    assert verdict.outcome == "red"
    assert any("mean moved up" in reason for reason in verdict.reasons)


def test_it_turns_red_on_a_new_category_and_says_which():
    values = np.linspace(1.0, 2.0, 200)
    c = traffic.compare_traffic(
        values, values, reference_categories=["prose"] * 200, window_categories=["prose"] * 180 + ["code"] * 20
    )
    verdict = traffic.classify_traffic(c)
    assert verdict.outcome == "red"
    assert any("'code'" in reason for reason in verdict.reasons)


def test_it_needs_an_effect_as_well_as_a_small_p_value():
    spec = traffic.TrafficSpec("mean_shift", 0.5, "block")
    ref = np.random.default_rng(0).normal(0, 1, 5000)
    c = traffic.compare_traffic(ref, ref + 0.2, n_boot=10)
    assert c.shift_p_value < 1e-6
    assert traffic.classify_traffic(c, [spec]).outcome == "green"


def test_it_finds_an_embedding_shift_by_permutation():
    rng = np.random.default_rng(5)
    ref = rng.normal(0, 1, (200, 8))
    same, moved = rng.normal(0, 1, (100, 8)), rng.normal(0, 1, (100, 8)) + np.eye(8)[0]
    distance, p_same = traffic.mean_embedding_shift(ref, same, n_permutations=200)
    assert p_same > 0.01
    distance, p_moved = traffic.mean_embedding_shift(ref, moved, n_permutations=200)
    assert p_moved < 0.01
    assert distance == pytest.approx(np.linalg.norm(moved.mean(0) - ref.mean(0)) / math.sqrt(8), rel=0.2)


def test_it_parses_window_lengths_and_aligns_windows_to_them():
    assert traffic.parse_duration("1d") == 86400
    assert traffic.parse_duration("6h") == 21600
    for bad in ("", "1y", "0d", "d", "-1h"):
        with pytest.raises(ValueError):
            traffic.parse_duration(bad)
    day = 86400
    assert traffic.window_starts([day * 3 + 5, day * 3 + day - 1, day * 4], day).tolist() == [3 * day, 3 * day, 4 * day]


def test_it_samples_every_category_with_its_minimum_reproducibly():
    categories = ["big"] * 900 + ["mid"] * 95 + ["rare"] * 5
    chosen = traffic.stratified_indices(categories, size=100, min_per_category=20, seed=4)
    picked = [categories[i] for i in chosen]
    assert len(chosen) == 100
    assert picked.count("rare") == 5 and picked.count("mid") >= 20
    assert chosen == traffic.stratified_indices(categories, size=100, min_per_category=20, seed=4)
    assert chosen != traffic.stratified_indices(categories, size=100, min_per_category=20, seed=5)


def test_it_picks_the_most_surprising_samples_and_dedupes():
    assert traffic.most_surprising([0.5, 3.0, 2.0, 3.0, 1.0], 2, exclude=[1]) == [3, 2]
    assert traffic.unique_indices(["a", "b", "a", "c", "b"]) == [0, 1, 3]
    assert traffic.outlier_count("5%", 1000) == 50
    assert traffic.outlier_count("7", 1000) == 7


def test_it_alarms_only_when_the_model_does_worse_on_the_window():
    rng = np.random.default_rng(9)
    ref = rng.lognormal(0, 0.3, 1000)
    easier = traffic.compare_traffic(ref, rng.lognormal(0, 0.3, 1000) * 0.8, n_boot=50)
    assert easier.worse_sigma < -0.5
    assert easier.ks_worse_p_value > 0.5 and easier.ks_p_value < 1e-6
    verdict = traffic.classify_traffic(easier)
    assert verdict.outcome == "green" and "does better" in verdict.reasons[0]
    # For a higher-is-better metric (similarity) lower values are the worse ones.
    worse = traffic.compare_traffic(ref, rng.lognormal(0, 0.3, 1000) * 0.8, direction="higher", n_boot=50)
    assert worse.worse_sigma > 0.5
    assert traffic.classify_traffic(worse).outcome == "red"


def test_it_computes_the_one_sided_ks_as_scipy_does():
    rng = np.random.default_rng(10)
    ref, win = rng.normal(0, 1, 300), rng.normal(0.3, 1, 200)
    c = traffic.compare_traffic(ref, win, n_boot=10)
    assert c.ks_worse_p_value == pytest.approx(stats.ks_2samp(ref, win, alternative="greater", method="asymp").pvalue)
    assert c.ks_worse_p_value < 0.01
