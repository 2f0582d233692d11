"""Scorer plug-ins (see `base` for the contract). Importing this package registers the built-in
scorers and those installed as packages (`plugins`)."""

from collections.abc import Mapping

from evals.scoring.errors import ScoringError
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import (  # noqa: F401  (registration)
    causal_nll,
    cosine_similarity,
    generated_answers,
    human_labels,
    judge_preference,
    judge_score,
    multiple_choice,
)
from evals.scoring.scorers.base import (
    DEFAULT_SCORERS,
    METRICS,
    SCORERS,
    Needs,
    Option,
    Scorer,
    ScorerOutput,
    needs_baseline,
    on_judge_queue,
    register,
    register_metrics,
    register_scorer,
    validate_options,
)
from evals.scoring.scorers.generated_answers import AnswerScorer, answer_scorer
from evals.scoring.scorers.plugins import PLUGIN_ERRORS, load_plugins

__all__ = [
    "DEFAULT_SCORERS",
    "METRICS",
    "PLUGIN_ERRORS",
    "SCORERS",
    "AnswerScorer",
    "MetricSpec",
    "Needs",
    "Option",
    "Scorer",
    "ScorerOutput",
    "answer_scorer",
    "metric_scorer",
    "needs_baseline",
    "on_judge_queue",
    "register",
    "register_metrics",
    "register_scorer",
    "scorer_options_check",
    "scorers_for",
    "validate_options",
]

load_plugins()


def scorers_for(
    kind: str,
    names: list[str] | tuple[str, ...] | None = None,
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> list[Scorer]:
    """The scorers to run on a model of `kind`: those named (a family setting) or the kind's
    defaults, each with its option values from `options` (`{scorer name: {option: value}}`)."""
    chosen = list(names) if names else list(DEFAULT_SCORERS.get(kind, ()))
    if not chosen:
        raise ScoringError(f"no scorer for {kind} models")
    unknown = [name for name in chosen if name not in SCORERS]
    if unknown:
        raise ScoringError(f"unknown scorer(s) {unknown}; known: {sorted(SCORERS)}")
    wrong_kind = [name for name in chosen if kind not in SCORERS[name].model_kinds]
    if wrong_kind:
        raise ScoringError(f"scorer(s) {wrong_kind} do not run on {kind} models")
    scorer_options_check(chosen, options)
    return [
        SCORERS[name].with_options(options[name]) if options and name in options else SCORERS[name] for name in chosen
    ]


def scorer_options_check(names: list[str] | tuple[str, ...], options: object) -> None:
    """A `ScoringError` naming what is wrong with `options` (`{scorer name: {option: value}}`) for
    the scorers `names`: not an object, a scorer not run, an unknown option, a value of the wrong type."""
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise ScoringError(
            f"scorer options must be an object {{scorer: {{option: value}}}}, not {type(options).__name__}"
        )
    not_run = sorted(set(options) - set(names))
    if not_run:
        raise ScoringError(f"scorer options for scorer(s) not run: {not_run}; run: {sorted(names)}")
    for name, given in options.items():
        validate_options(SCORERS[name], given)


def metric_scorer(metric: str) -> Scorer:
    """The scorer that yields `metric`."""
    for scorer in SCORERS.values():
        if any(spec.name == metric for spec in scorer.metrics):
            return scorer
    raise KeyError(metric)


def metric_spec(metric: str) -> MetricSpec:
    return METRICS[metric]
