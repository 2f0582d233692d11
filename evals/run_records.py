"""Typed records of what a run keeps in its JSON fields (`EvalRun.sampling`, `.judging`, `.usage`).

Each record reads a stored object (`from_json`: unknown keys are ignored, missing ones take their
defaults, so runs stored before a field existed still read) and writes one (`to_json`: only what is
set). Services build records and store `to_json()`; readers go through the run's `*_record`
properties instead of picking keys out of dictionaries.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

from driftboard.prices import Prices


def _known(cls: type, stored: dict | None) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in (stored or {}).items() if key in names}


def _set(record: object) -> dict[str, Any]:
    """The record as JSON, leaving out what is unset (None or empty) so that stored objects stay small."""
    return {
        f.name: getattr(record, f.name)
        for f in dataclasses.fields(record)
        if getattr(record, f.name) is not None and getattr(record, f.name) != {}
    }


# --- Sequential sampling (EvalRun.sampling) -------------------------------------------------------


@dataclass(frozen=True)
class SampledMetric:
    """Where a gated metric's confidence sequence stood when a sequential run stopped (JSON has no
    infinity: an end the sequence could not bound is None)."""

    decision: str = ""
    samples_used: int | None = None  # of the metric's own samples (an answer metric's: those with a prompt)
    samples_total: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    delta: float | None = None
    baseline_value: float | None = None
    block_limit: float | None = None
    green_limit: float | None = None
    trace: list = field(default_factory=list)

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        return cls(**_known(cls, stored))


@dataclass(frozen=True)
class Sampling:
    """How a run chose its samples: a sequential run's design, seed and stop; a completion run's
    origin; a traffic run's drawn positions."""

    mode: str | None = None  # "sequential" or "completion"
    seed: int | None = None
    confidence: float | None = None
    chunk_size: int | None = None
    min_samples: int | None = None
    samples_used: int | None = None
    samples_total: int | None = None
    stopped_early: bool | None = None
    abandoned: str | None = None  # why sampling stopped deciding and the full set was scored
    baseline_artifact: int | None = None
    disabled: str | None = None  # why sampling fell back to the full set
    metrics: dict[str, SampledMetric] = field(default_factory=dict)
    completes_run: int | None = None
    samples_completed: int | None = None
    size: int | None = None  # a traffic run's sample size
    positions: list[int] | None = None  # a traffic run's drawn positions

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        known = _known(cls, stored)
        known["metrics"] = {name: SampledMetric.from_json(m) for name, m in known.get("metrics", {}).items()}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        stored = _set(self)
        if self.metrics:
            stored["metrics"] = {name: dataclasses.asdict(m) for name, m in self.metrics.items()}
        return stored


# --- Judging (EvalRun.judging) ---------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeCalls:
    """What one judge model's calls are priced by."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        return cls(**{key: int(value) for key, value in _known(cls, stored).items()})

    def __add__(self, other: "JudgeCalls") -> "JudgeCalls":
        return JudgeCalls(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class JudgeRunStats:
    """What a judge run's calls cost, all its judges together, and per judge identity (`by_judge`)."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slowest: float = 0.0
    judge_errors: int = 0
    by_judge: dict[str, JudgeCalls] = field(default_factory=dict)

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        known = _known(cls, stored)
        known["by_judge"] = {key: JudgeCalls.from_json(v) for key, v in known.get("by_judge", {}).items()}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        stored = dataclasses.asdict(self)
        stored["by_judge"] = {key: dataclasses.asdict(calls) for key, calls in self.by_judge.items()}
        return stored


@dataclass(frozen=True)
class JudgedBaseline:
    """The baseline whose stored answers a pairwise judge compared the candidate's with."""

    artifact: int | None = None  # None: there was no baseline to compare with (`skipped` says why)
    version: int | None = None
    answers: int | None = None
    skipped: str | None = None  # why nothing was compared

    @classmethod
    def from_json(cls, stored: dict | None) -> Self | None:
        known = _known(cls, stored)
        return cls(**known) if known else None


@dataclass(frozen=True)
class Judging:
    """A judge run: the facts of the model whose stored answers it judges (`model`), the scoring run
    that stored them, the baseline its pairwise judges compared with, and once done what it cost."""

    model: dict | None = None
    scoring_run: int | None = None
    baseline: JudgedBaseline | None = None
    stats: JudgeRunStats | None = None

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        stored = stored or {}
        return cls(
            model=stored.get("model"),
            scoring_run=stored.get("scoring_run"),
            baseline=JudgedBaseline.from_json(stored.get("baseline")),
            stats=JudgeRunStats.from_json(stored["stats"]) if "stats" in stored else None,
        )

    def to_json(self) -> dict[str, Any]:
        stored = _set(dataclasses.replace(self, baseline=None, stats=None))
        if self.baseline is not None:
            stored["baseline"] = _set(self.baseline)
        if self.stats is not None:
            stored["stats"] = self.stats.to_json()
        return stored


# --- Usage (EvalRun.usage) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What a finished run used and avoided; DRIFTBOARD_PRICES turns it into money when read."""

    device: str = ""
    device_kind: str = ""  # what the GPU-hour price is looked up by: "cpu", a GPU's model name, or ""
    worker_seconds: float = 0.0
    forward_passes: int = 0
    tokens_scored: int = 0
    tokens_generated: int = 0
    judges: dict[str, JudgeCalls] = field(default_factory=dict)  # per judge model
    samples_full: int = 0  # the samples a full run would have scored (0 for a completion run)
    samples_scored: int = 0
    samples_cached: int = 0

    @classmethod
    def from_json(cls, stored: dict | None) -> Self:
        known = _known(cls, stored)
        known["judges"] = {model: JudgeCalls.from_json(calls) for model, calls in known.get("judges", {}).items()}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        stored = dataclasses.asdict(self)
        stored["judges"] = {model: dataclasses.asdict(calls) for model, calls in self.judges.items()}
        return stored

    def amount(self, prices: Prices) -> float:
        """The money this usage costs at `prices` (DRIFTBOARD_PRICES)."""
        device = prices.device_hour(self.device_kind) * self.worker_seconds / 3600
        return device + sum(
            prices.judge_amount(model, prompt_tokens=calls.prompt_tokens, completion_tokens=calls.completion_tokens)
            for model, calls in self.judges.items()
        )

    @property
    def judge_tokens(self) -> int:
        return sum(calls.tokens for calls in self.judges.values())

    @property
    def samples_computed(self) -> int:
        return self.samples_scored - self.samples_cached
