"""Judge results of one candidate (and its baseline) as the CLI reports them.

Pointwise: `metrics.judge_score` (mean rating over the judged samples) and, against a baseline,
`comparison.judge_score` through the paired bootstrap like every other metric. Pairwise:
`comparison.judge_preference` = {delta, ci_low, ci_high, outcome, samples, errors}, the
one-sample statistic of `preference`. Always `judge_calls` (0 when every judgement came from the
cache), `judge_errors`, and the disagreement rates.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from evals.scoring import drift
from evals.scoring.judges.judging import JudgedSamples, JudgementStore, JudgeSettings, items_from_samples, judge_items
from evals.scoring.judges.preference import DEFAULT_PREFERENCE_LIMIT, preference_interval, preference_outcome
from evals.scoring.judges.protocol import Judge
from evals.scoring.metrics import MetricSpec

JUDGE_SCORE = MetricSpec("judge_score", "higher", unit_range=(1.0, 10.0), numerator="judge_score", denominator="judged")


def judge_report(
    judge: Judge,
    store: JudgementStore,
    settings: JudgeSettings,
    samples: Sequence[Mapping[str, object]],
    answers: Sequence[str],
    baseline_answers: Sequence[str] | None = None,
    *,
    limit: float = DEFAULT_PREFERENCE_LIMIT,
) -> dict:
    if settings.mode == "pairwise":
        if baseline_answers is None:
            raise ValueError("pairwise judging needs the baseline's answers")
        result = judge_items(judge, items_from_samples(samples, answers, baseline_answers), store, settings)
        preference = preference_interval(result.values)
        comparison = {"judge_preference": preference.as_dict(preference_outcome(preference, limit))}
        return {"metrics": {}, "comparison": comparison, **_costs(result, result)}
    candidate = judge_items(judge, items_from_samples(samples, answers), store, settings)
    report = {"metrics": {"judge_score": _mean(candidate)}, "comparison": {}, **_costs(candidate, candidate)}
    if baseline_answers is not None:
        baseline = judge_items(judge, items_from_samples(samples, baseline_answers), store, settings)
        report["comparison"]["judge_score"] = _paired(candidate, baseline)
        report["judge_calls"] += baseline.calls
        report["judge_errors"] += baseline.error_count
    return report


def _mean(result: JudgedSamples) -> float | None:
    return float(np.nanmean(result.values)) if result.valid.any() else None


def _paired(candidate: JudgedSamples, baseline: JudgedSamples) -> dict:
    cand, base = _arrays(candidate), _arrays(baseline)
    comparison = drift.compare(JUDGE_SCORE, *cand, *base)
    return {
        "candidate": comparison.candidate,
        "baseline": comparison.baseline,
        "delta": comparison.delta,
        "ci_low": comparison.ci_low,
        "ci_high": comparison.ci_high,
        "p_value": comparison.p_value,
    }


def _arrays(result: JudgedSamples) -> tuple[np.ndarray, np.ndarray]:
    return np.nan_to_num(result.values, nan=0.0), result.valid.astype(np.float64)


def _costs(result: JudgedSamples, replies_of: JudgedSamples) -> dict:
    return {
        "judge_calls": result.calls,
        "judge_errors": result.error_count,
        "judge_repeat_disagreement": result.repeat_disagreement,
        "judge_order_disagreement": result.order_disagreement,
        "judgements": [
            {"replies": replies, "error": error}
            for replies, error in zip(replies_of.replies, result.errors, strict=True)
        ],
    }
