"""The scorer contract and the registry of scorers.

A scorer turns samples into named per-sample values (`{"nll": …, "tokens": …}`) and declares, as
class attributes, everything the engine needs to know about it; the engine reads the declarations
and never probes for attributes:

- `name`, `version` (bump it whenever the numbers change, so stale cached values stop matching);
- `model_kinds`: the model kinds it runs on (`causal-lm`, `embedding`);
- `fields`: the sample fields it needs, in the field syntax `text`, `reference`, `prompt|messages`
  (`a|b`: either of them). A sample without one is skipped when `skips_incomplete`, else refused
  before any model work;
- `reads`: every field whose content changes its values (the cache hashes exactly these); by
  default the names in `fields`. A judge that shows the reference when there is one reads it
  without needing it;
- `needs`: what it needs besides the samples (`Needs`): the model's answers (the engine generates
  them once for every scorer that needs them), a judge (it then runs on the judge queue, on stored
  answers), the baseline's answers;
- `options`: its options, `{name: Option(type, default)}`, validated generically
  (`validate_options`) for the API, the admin and the CLI alike;
- `metrics`: the `MetricSpec`s of the values it yields.

`config_facts(lm)` says what else its values depend on (generation settings, an embedder, a
judge, its option values); they enter the result key and the fingerprint. `configured(…)` returns
a copy with a family's settings. Scorers that drive the model themselves are classes with
`score()`; the common case, a function over one sample's answer, is `answer_scorer` (see
`answer_function`). Scorers are registered with `register` (or the decorator) here and found in
installed packages through the entry-point group `driftboard.scorers` (see `plugins`).
"""

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from evals.scoring.batching import ProgressCallback
from evals.scoring.errors import ScoringError
from evals.scoring.loading import LoadedModel
from evals.scoring.metrics import MetricSpec

Sample = Mapping[str, object]


@dataclass(frozen=True)
class ScorerOutput:
    """Named values for each sample given (in order), plus what computing them cost."""

    values: list[dict[str, float]]
    forward_passes: int
    tokens_scored: int


@dataclass(frozen=True)
class Needs:
    """What a scorer needs besides the samples and the model."""

    # The model's answers to each sample's prompt: generated once per run and shared.
    answers: bool = False
    # A judge: the scorer runs on the judge queue, on the answers the scoring run stored.
    judge: bool = False
    # The production baseline's answers to the same prompts (a pairwise judge).
    baseline: bool = False


@dataclass(frozen=True)
class Option:
    """One declared scorer option: its type (`list`, `str`, `int`, `float`, `bool`, `dict`) and default."""

    type: type
    default: Any = None
    help: str = ""

    def check(self, scorer: str, name: str, value: object) -> object:
        if value is self.default:  # a declared default may be a tuple for a `list` option
            return value
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and self.type is not bool or not isinstance(value, self.type):
            raise ScoringError(
                f"scorer option `{scorer}.{name}` must be of type {self.type.__name__}, not {type(value).__name__}"
            )
        return value


class Scorer:
    """The declared contract every scorer follows (see the module docstring)."""

    name: ClassVar[str]
    version: ClassVar[int]
    model_kinds: ClassVar[frozenset[str]]
    fields: ClassVar[tuple[str, ...]]
    reads: ClassVar[tuple[str, ...]] = ()
    skips_incomplete: ClassVar[bool] = True
    needs: ClassVar[Needs] = Needs()
    options: ClassVar[Mapping[str, Option]] = {}
    metrics: ClassVar[tuple[MetricSpec, ...]]

    def __init__(self, option_values: Mapping[str, object] | None = None) -> None:
        self.option_values = validate_options(self, option_values or {})

    @classmethod
    def read_fields(cls) -> frozenset[str]:
        """The sample fields whose content changes the values (what the result cache hashes)."""
        return frozenset(cls.reads or (name for field in cls.fields for name in field.split("|")))

    def with_options(self, option_values: Mapping[str, object]) -> Self:
        """A copy with these option values (validated against the declaration)."""
        copy = self.configured()
        copy.option_values = validate_options(self, option_values)
        return copy

    def configured(self, **settings: object) -> Self:
        """A copy with a family's settings (answers, judge, baseline); scorers without any return a copy."""
        if settings:
            raise ScoringError(f"the {self.name} scorer takes no settings {sorted(settings)}")
        copy = type(self)()
        copy.option_values = self.option_values
        return copy

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        """What else the values depend on besides weights, sample, version and context (option values)."""
        changed = {name: value for name, value in self.option_values.items() if value != self.options[name].default}
        return {"options": changed} if changed else {}

    def config_key(self, lm: LoadedModel) -> str:
        """A short hash of `config_facts` (empty when there are none), joined to the engine's key."""
        facts = self.config_facts(lm)
        if not facts:
            return ""
        return (
            "answers=" + hashlib.sha256(json.dumps(facts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
        )

    def score(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        raise NotImplementedError


def validate_options(scorer: Scorer | type[Scorer], given: Mapping[str, object]) -> dict[str, object]:
    """The scorer's option values: the declared defaults, replaced by `given`. A `ScoringError` names
    an unknown option or a value of the wrong type."""
    if not isinstance(given, Mapping):
        raise ScoringError(f"the options of the {scorer.name} scorer must be an object, not {type(given).__name__}")
    unknown = sorted(set(given) - set(scorer.options))
    if unknown:
        known = ", ".join(sorted(scorer.options)) or "none"
        raise ScoringError(f"unknown option(s) {unknown} for the {scorer.name} scorer; known: {known}")
    values = {name: option.default for name, option in scorer.options.items()}
    values.update({name: scorer.options[name].check(scorer.name, name, value) for name, value in given.items()})
    return values


def on_judge_queue(scorer: Scorer) -> bool:
    """Whether the scorer asks a judge about stored answers: it then runs on the judge queue, after
    the scoring run generated the answers, never on a scoring worker."""
    return scorer.needs.judge


def needs_baseline(scorer: Scorer) -> bool:
    """Whether the scorer compares the candidate's answers with a baseline's (`configured(baseline=…)`)."""
    return scorer.needs.baseline


SCORERS: dict[str, Scorer] = {}
METRICS: dict[str, MetricSpec] = {}
# The scorers a family runs when it names none, by model kind.
DEFAULT_SCORERS: dict[str, tuple[str, ...]] = {}


def register_scorer(scorer: Scorer, *, default_for: Sequence[str] = ()) -> Scorer:
    """Make a scorer available by name and its metrics known everywhere; a `ValueError` names a clash."""
    if not isinstance(scorer, Scorer):
        raise TypeError(f"{scorer!r} is not a Scorer: subclass evals.scoring.scorers.Scorer and declare its contract")
    if scorer.name in SCORERS:
        raise ValueError(f"scorer {scorer.name!r} is registered twice")
    clashing = [spec.name for spec in scorer.metrics if spec.name in METRICS]
    if clashing:
        raise ValueError(f"scorer {scorer.name!r} redefines metrics {clashing}")
    SCORERS[scorer.name] = scorer
    METRICS.update({spec.name: spec for spec in scorer.metrics})
    for kind in default_for:
        DEFAULT_SCORERS[kind] = (*DEFAULT_SCORERS.get(kind, ()), scorer.name)
    return scorer


def register_metrics(*specs: MetricSpec) -> None:
    """Make metrics that no scorer computes (reviewers' labels) known everywhere; a `ValueError` names a clash."""
    clashing = [spec.name for spec in specs if spec.name in METRICS]
    if clashing:
        raise ValueError(f"metrics {clashing} are defined twice")
    METRICS.update({spec.name: spec for spec in specs})


def register(*, default_for: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator: `register_scorer` for an instance of the class."""

    def decorate(cls: type) -> type:
        register_scorer(cls(), default_for=default_for)
        return cls

    return decorate
