"""Cohen's κ, its bootstrap interval and Fleiss' κ against scikit-learn, textbook examples and
simulations whose agreement is known."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from evals.scoring.agreement import cohen_kappa, fleiss_kappa, kappa_agreement

PAIRWISE = ("candidate", "baseline", "tie")


def test_it_matches_the_textbook_two_rater_example():
    # 50 grant proposals: both yes 20, only the first yes 5, only the second yes 10, both no 15
    # (p_o = 0.7, p_e = 0.5, κ = 0.4).
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15

    agreement = kappa_agreement(first, second, ("yes", "no"))

    assert agreement.kappa == pytest.approx(0.4)
    assert agreement.agreement == pytest.approx(0.7)
    assert agreement.confusion == [[20, 5], [10, 15]] and agreement.n == 50


@pytest.mark.parametrize("seed", range(8))
def test_it_matches_scikit_learn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    first = rng.choice(PAIRWISE, size=n, p=[0.5, 0.3, 0.2]).tolist()
    copied = rng.random(n) < rng.random()
    second = np.where(copied, first, rng.choice(PAIRWISE, size=n)).tolist()

    assert cohen_kappa(first, second, PAIRWISE) == pytest.approx(cohen_kappa_score(first, second))
    assert kappa_agreement(first, second, PAIRWISE, n_boot=200).kappa == pytest.approx(cohen_kappa_score(first, second))


def test_it_says_kappa_is_undefined_when_both_raters_use_one_category():
    agreement = kappa_agreement(["good"] * 10, ["good"] * 10, ("good", "bad"))

    assert np.isnan(agreement.kappa) and np.isnan(agreement.ci_low) and agreement.agreement == 1.0


def test_it_refuses_labels_outside_the_vocabulary():
    with pytest.raises(ValueError, match="not among the categories"):
        cohen_kappa(["good"], ["maybe"], ("good", "bad"))


def test_the_interval_is_seeded_and_holds_the_estimate():
    rng = np.random.default_rng(3)
    first = rng.choice(["good", "bad"], size=80).tolist()
    second = [label if rng.random() < 0.7 else "bad" for label in first]

    one = kappa_agreement(first, second, ("good", "bad"), seed=5)
    again = kappa_agreement(first, second, ("good", "bad"), seed=5)

    assert (one.ci_low, one.ci_high) == (again.ci_low, again.ci_high)
    assert one.ci_low < one.kappa < one.ci_high


def raters_with_known_kappa(rng, *, items: int, raters: int, q: float, k: int) -> np.ndarray:
    """Each rater reports an item's true category (uniform over k) with probability q, else a uniform
    guess: two raters then agree beyond chance by exactly κ = q² (their marginals stay uniform)."""
    truth = rng.integers(0, k, size=items)
    keep = rng.random((items, raters)) < q
    return np.where(keep, truth[:, None], rng.integers(0, k, size=(items, raters)))


def test_the_95_percent_interval_covers_the_true_kappa_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    q, k, repeats = np.sqrt(0.5), 3, 300
    true_kappa = q**2
    covered = 0
    for repeat in range(repeats):
        ratings = raters_with_known_kappa(rng, items=120, raters=2, q=q, k=k)
        names = np.array(PAIRWISE)
        agreement = kappa_agreement(
            names[ratings[:, 0]].tolist(), names[ratings[:, 1]].tolist(), PAIRWISE, n_boot=400, seed=repeat
        )
        covered += agreement.ci_low <= true_kappa <= agreement.ci_high
    # 300 intervals at 95 %: the count is Binomial(300, 0.95), 285 ± 3.8; a percentile bootstrap at
    # n = 120 runs slightly short, so the band allows 90 %–98.5 %.
    assert 270 <= covered <= 296, covered


def test_it_matches_the_textbook_fleiss_example():
    # Fleiss (1971) as usually worked: 10 items, 14 raters, 5 categories; P̄ = 0.378, P̄e = 0.213, κ = 0.210.
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]

    assert fleiss_kappa(np.array(counts)) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_recovers_a_known_agreement_and_equals_scotts_pi_for_two_raters():
    rng = np.random.default_rng(11)
    ratings = raters_with_known_kappa(rng, items=20_000, raters=4, q=0.8, k=3)
    counts = np.stack([(ratings == c).sum(axis=1) for c in range(3)], axis=1)

    assert fleiss_kappa(counts) == pytest.approx(0.64, abs=0.015)
    # Two raters: Fleiss' κ is Scott's π, which pools both marginals; compute it by hand.
    pair = ratings[:500, :2]
    observed = float(np.mean(pair[:, 0] == pair[:, 1]))
    pooled = np.bincount(pair.ravel(), minlength=3) / pair.size
    expected = float((pooled**2).sum())
    two = np.stack([(pair == c).sum(axis=1) for c in range(3)], axis=1)
    assert fleiss_kappa(two) == pytest.approx((observed - expected) / (1 - expected))


def test_fleiss_kappa_leaves_out_items_with_one_rating():
    assert np.isnan(fleiss_kappa(np.array([[1, 0], [0, 1]])))
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [1, 0]])) == pytest.approx(1.0)
