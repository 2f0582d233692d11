"""Calibration of the traffic-drift outcome on simulated windows with a known truth.

Run: python bench/traffic.py [--reps 1000]

A reference (the production model's per-sample bits per byte on its golden set, n_ref samples in
six categories of unequal size) is drawn once per repetition; a window of n samples is drawn from
the same distribution (null) or from a moved one, and `compare_traffic` + `classify_traffic` with
the default thresholds give its outcome. Per-sample bits per byte are lognormal (a heavy right
tail, as real per-sample scores have). Targets: on null windows red ≤ 1 % and amber ≤ 5 % at every
n, not growing with n; ≥ 95 % red for a 0.2 σ mean shift at n = 1,000, for a new category making
up 5 % of the window, and for a category mix moved by PSI 0.25. Reported beside them: a negligible
0.03 σ shift, which KS alone (p < 0.05, the last column) flags more and more often as windows grow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.scoring.traffic import classify_traffic, compare_traffic, psi  # noqa: E402

CATEGORIES = np.array(["prose", "dialogue", "code", "news", "legal", "poetry"])
MIX = np.array([0.40, 0.25, 0.15, 0.10, 0.07, 0.03])
LOG_MEDIAN, LOG_SIGMA = np.log(1.1), 0.35
SIGMA = float(np.sqrt((np.exp(LOG_SIGMA**2) - 1) * np.exp(2 * LOG_MEDIAN + LOG_SIGMA**2)))
N_REFERENCE = 2000
NULL_SIZES = (200, 500, 1000, 2000, 5000)
N_BOOT = 200
# Evidently's small-sample rule alone (KS p < 0.05), for comparison: it flags negligible shifts more and more often.
KS_ALONE_ALPHA = 0.05


def draw(rng: np.random.Generator, n: int, *, shift_sigma: float = 0.0, mix: np.ndarray = MIX, new_share: float = 0.0):
    values = rng.lognormal(LOG_MEDIAN, LOG_SIGMA, n) + shift_sigma * SIGMA
    categories = CATEGORIES[rng.choice(len(mix), size=n, p=mix)].astype(object)
    categories[rng.random(n) < new_share] = "unseen"
    return values, categories


def mix_with_psi(target: float) -> np.ndarray:
    """The reference mix tilted towards its rare categories until PSI(reference, tilted) = target."""

    def tilted(t: float) -> np.ndarray:
        weights = MIX ** (1 - t)
        return weights / weights.sum()

    t = optimize.brentq(lambda t: psi(MIX, tilted(t)) - target, 0.0, 1.0)
    return tilted(t)


def outcome(rng: np.random.Generator, n: int, n_reference: int, **moved) -> str:
    ref_values, ref_categories = draw(rng, n_reference)
    win_values, win_categories = draw(rng, n, **moved)
    comparison = compare_traffic(
        ref_values,
        win_values,
        reference_categories=ref_categories,
        window_categories=win_categories,
        n_boot=N_BOOT,
        seed=int(rng.integers(2**31)),
    )
    return classify_traffic(comparison).outcome, comparison.ks_p_value < KS_ALONE_ALPHA


def rates(reps: int, n: int, n_reference: int, seed: int, **moved) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    results = [outcome(rng, n, n_reference, **moved) for _ in range(reps)]
    outcomes = [o for o, _ in results]
    return {
        **{o: outcomes.count(o) / reps for o in ("green", "amber", "red")},
        "ks_alone": sum(ks for _, ks in results) / reps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    args = parser.parse_args()
    mix_25 = mix_with_psi(0.25)
    scenarios = [
        *[(f"null (no drift), n = {n:,}", n, N_REFERENCE, {}, "red ≤ 1 %, amber ≤ 5 %") for n in NULL_SIZES],
        ("null, n = 1,000, reference 1,000", 1000, 1000, {}, "red ≤ 1 %, amber ≤ 5 %"),
        *[
            (f"negligible shift 0.03 σ, n = {n:,}", n, N_REFERENCE, {"shift_sigma": 0.03}, "(reported)")
            for n in (200, 1000, 5000)
        ],
        ("mean shift 0.2 σ, n = 1,000", 1000, N_REFERENCE, {"shift_sigma": 0.2}, "red ≥ 95 %"),
        ("mean shift 0.2 σ, n = 1,000, reference 1,000", 1000, 1000, {"shift_sigma": 0.2}, "(reported)"),
        ("new category, 5 % of the window, n = 1,000", 1000, N_REFERENCE, {"new_share": 0.05}, "red ≥ 95 %"),
        ("new category, 5 % of the window, n = 200", 200, N_REFERENCE, {"new_share": 0.05}, "red ≥ 95 %"),
        ("category mix moved by PSI 0.25, n = 1,000", 1000, N_REFERENCE, {"mix": mix_25}, "red ≥ 95 %"),
        ("category mix moved by PSI 0.25, n = 200", 200, N_REFERENCE, {"mix": mix_25}, "(reported)"),
    ]
    print(f"reference n = {N_REFERENCE:,} unless stated, {args.reps:,} windows per row, lognormal per-sample bpb")
    print("| scenario | green | amber | red | target | KS p < 0.05 alone |\n|---|---:|---:|---:|---|---:|")
    for seed, (label, n, n_reference, moved, target) in enumerate(scenarios):
        r = rates(args.reps, n, n_reference, seed, **moved)
        cells = " | ".join(f"{100 * r[o]:.1f} %" for o in ("green", "amber", "red"))
        print(f"| {label} | {cells} | {target} | {100 * r['ks_alone']:.1f} % |")


if __name__ == "__main__":
    main()
