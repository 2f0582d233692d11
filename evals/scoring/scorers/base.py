"""The scorer protocol and the registry of scorers.

A scorer turns samples into named per-sample values (`{"nll": …, "tokens": …}`) and declares the
metrics made of them. The engine (`evals.scoring.cache`) caches the values per (weights, sample,
scorer and version, config); verdicts, bands, sampling, charts and PR comments work from the
`MetricSpec`s alone. Adding a scorer: one module in this package with a `@register` class, an
import line in `__init__.py`, and its tests.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from evals.scoring.batching import ProgressCallback
from evals.scoring.loading import LoadedModel
from evals.scoring.metrics import MetricSpec

Sample = Mapping[str, object]


@dataclass(frozen=True)
class ScorerOutput:
    """Named values for each sample given (in order), plus what computing them cost."""

    values: list[dict[str, float]]
    forward_passes: int
    tokens_scored: int


class Scorer(Protocol):
    name: ClassVar[str]
    # Bump whenever the scorer's numbers change, so that stale cached values stop matching.
    version: ClassVar[int]
    # Model kinds (`causal-lm`, `embedding`) the scorer runs on.
    model_kinds: ClassVar[frozenset[str]]
    # Sample fields it reads. A sample without one of them is skipped by this scorer when
    # `skips_incomplete` (a likelihood scorer on a prompt-only sample), else refused before any model work.
    fields: ClassVar[tuple[str, ...]]
    skips_incomplete: ClassVar[bool]
    # Optional `reads`: every sample field the values depend on, when more than `fields` (a field
    # read if present); the cache hashes exactly these.
    metrics: ClassVar[tuple[MetricSpec, ...]]

    def score(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput: ...


def on_judge_queue(scorer: Scorer) -> bool:
    """Whether the scorer asks a judge about stored answers (`judge_queue = True`): it then runs on
    the judge queue, after the scoring run generated the answers, never on a scoring worker."""
    return bool(getattr(scorer, "judge_queue", False))


SCORERS: dict[str, Scorer] = {}
METRICS: dict[str, MetricSpec] = {}
# The scorers a family runs when it names none, by model kind (today's behaviour).
DEFAULT_SCORERS: dict[str, tuple[str, ...]] = {}


def register(*, default_for: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator: make a scorer available by name and its metrics known everywhere."""

    def decorate(cls: type) -> type:
        scorer = cls()
        if scorer.name in SCORERS:
            raise ValueError(f"scorer {scorer.name!r} is registered twice")
        clashing = [spec.name for spec in scorer.metrics if spec.name in METRICS]
        if clashing:
            raise ValueError(f"scorer {scorer.name!r} redefines metrics {clashing}")
        SCORERS[scorer.name] = scorer
        METRICS.update({spec.name: spec for spec in scorer.metrics})
        for kind in default_for:
            DEFAULT_SCORERS[kind] = (*DEFAULT_SCORERS.get(kind, ()), scorer.name)
        return cls

    return decorate
