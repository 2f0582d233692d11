"""Scorer plug-ins (see `base` for the protocol). Importing this package registers them all."""

from evals.scoring.errors import ScoringError
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import (  # noqa: F401  (registration)
    causal_nll,
    cosine_similarity,
    generated_answers,
    judge_preference,
    judge_score,
)
from evals.scoring.scorers.base import (
    DEFAULT_SCORERS,
    METRICS,
    SCORERS,
    Scorer,
    ScorerOutput,
    on_judge_queue,
    register,
)
from evals.scoring.scorers.judge_preference import needs_baseline

__all__ = [
    "DEFAULT_SCORERS",
    "METRICS",
    "SCORERS",
    "Scorer",
    "ScorerOutput",
    "metric_scorer",
    "needs_baseline",
    "on_judge_queue",
    "register",
    "scorers_for",
]


def scorers_for(kind: str, names: list[str] | tuple[str, ...] | None = None) -> list[Scorer]:
    """The scorers to run on a model of `kind`: those named (a family setting) or the kind's defaults."""
    chosen = list(names) if names else list(DEFAULT_SCORERS.get(kind, ()))
    if not chosen:
        raise ScoringError(f"no scorer for {kind} models")
    unknown = [name for name in chosen if name not in SCORERS]
    if unknown:
        raise ScoringError(f"unknown scorer(s) {unknown}; known: {sorted(SCORERS)}")
    wrong_kind = [name for name in chosen if kind not in SCORERS[name].model_kinds]
    if wrong_kind:
        raise ScoringError(f"scorer(s) {wrong_kind} do not run on {kind} models")
    return [SCORERS[name] for name in chosen]


def metric_scorer(metric: str) -> Scorer:
    """The scorer that yields `metric`."""
    for scorer in SCORERS.values():
        if any(spec.name == metric for spec in scorer.metrics):
            return scorer
    raise KeyError(metric)


def metric_spec(metric: str) -> MetricSpec:
    return METRICS[metric]
