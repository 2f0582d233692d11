"""The engine: run a model's scorers over samples, reusing per-sample values already computed.

A result is keyed by the weights' sha256, the sample's content hash, the scorer and its version,
and the settings that change the numbers (context length and dtype). Scoring the same weights
twice runs no forward pass; a dataset version that adds 10 % new samples runs the model on those
10 % only. Where results live is up to the caller: anything with `get_many` / `put_many`
(`ResultStore`) will do, from a dict to a database table. Missing results are computed and stored
in chunks (`chunk_samples`), so a run killed half-way keeps what it had finished.
"""

import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
import torch
import transformers

from evals.scoring.batching import ProgressCallback, offset_progress
from evals.scoring.errors import SampleError
from evals.scoring.hashing import sample_sha256
from evals.scoring.loading import LoadedModel
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers import Scorer, scorers_for

__all__ = [
    "applicable",
    "InMemoryResultStore",
    "ResultKey",
    "ResultStore",
    "SampleResult",
    "ScoredSamples",
    "ScoringConfig",
    "fingerprint",
    "sample_sha256",
    "score_samples",
]

# Per-sample results are computed and stored this many samples at a time (at most), so that a
# killed run loses at most one chunk.
DEFAULT_CHUNK_SAMPLES = 256


class ResultKey(NamedTuple):
    weights_sha256: str
    sample_sha256: str
    scorer: str
    scorer_version: int
    config_key: str


@dataclass(frozen=True)
class SampleResult:
    """One sample's named values from one scorer (`{"nll": …, "tokens": …, "bytes": …}`)."""

    values: Mapping[str, float]

    def to_dict(self) -> dict[str, float]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> "SampleResult":
        return cls(dict(values))


class ResultStore(Protocol):
    def get_many(self, keys: Sequence[ResultKey]) -> dict[ResultKey, SampleResult]:
        """The stored results among `keys`; absent keys are left out."""
        ...

    def put_many(self, results: Mapping[ResultKey, SampleResult]) -> None: ...


class InMemoryResultStore:
    def __init__(self) -> None:
        self.results: dict[ResultKey, SampleResult] = {}

    def get_many(self, keys: Sequence[ResultKey]) -> dict[ResultKey, SampleResult]:
        return {key: self.results[key] for key in keys if key in self.results}

    def put_many(self, results: Mapping[ResultKey, SampleResult]) -> None:
        self.results.update(results)


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of a run. Only those that change the numbers enter the cache key."""

    max_length: int | None = None
    token_budget: int | None = None
    scorers: tuple[str, ...] = ()
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES

    def context_length(self, lm: LoadedModel) -> int:
        return min(lm.max_length, self.max_length or lm.max_length)

    def cache_key(self, lm: LoadedModel) -> str:
        dtype = str(lm.dtype).removeprefix("torch.")
        return f"max_length={self.context_length(lm)};dtype={dtype}"


@dataclass(frozen=True)
class ScorerValues:
    """One scorer's named per-sample values over the samples it applies to (`indices`)."""

    scorer: Scorer
    indices: np.ndarray
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class ScoredSamples:
    """Per-scorer arrays over the samples given, plus what the run cost."""

    results: dict[str, ScorerValues]
    samples_computed: int
    samples_reused: int
    forward_passes: int
    tokens_scored: int
    seconds: float
    specs: dict[str, MetricSpec] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def scorer_of(self, metric: str) -> ScorerValues:
        for result in self.results.values():
            if any(spec.name == metric for spec in result.scorer.metrics):
                return result
        raise ValueError(f"unknown metric {metric!r}")

    def values(self, scorer: str) -> dict[str, np.ndarray]:
        return self.results[scorer].values

    def arrays(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample indices, numerators, denominators) of `metric`."""
        result = self.scorer_of(metric)
        numerators, denominators = self.specs[metric].arrays(result.values)
        return result.indices, numerators, denominators

    def per_sample(self, metric: str) -> np.ndarray:
        _, numerators, denominators = self.arrays(metric)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.specs[metric].value(numerators, denominators), dtype=np.float64)

    def aggregate(self, metric: str, mask: np.ndarray | None = None) -> float:
        """The dataset-level value; `mask` (over the metric's samples) selects, e.g., one category."""
        _, numerators, denominators = self.arrays(metric)
        selected = slice(None) if mask is None else mask
        return float(self.specs[metric].value(numerators[selected].sum(), denominators[selected].sum()))


def score_samples(
    lm: LoadedModel,
    samples: Sequence[Mapping[str, object]],
    store: ResultStore,
    config: ScoringConfig = ScoringConfig(),
    *,
    scorers: Sequence[Scorer] | None = None,
    progress: ProgressCallback | None = None,
) -> ScoredSamples:
    """Run the model's scorers over `samples`: those given (configured instances, e.g. with a
    family's generation settings), else config.scorers by name, else the kind's defaults."""
    started = time.perf_counter()
    scorers = list(scorers) if scorers is not None else scorers_for(lm.kind, config.scorers)
    results: dict[str, ScorerValues] = {}
    cost = _Cost()
    # e.g. answer scorers on traffic, which has no prompts: no metric, no error
    applying = [(scorer, indices) for scorer in scorers if len(indices := applicable(scorer, samples))]
    work, before = sum(len(indices) for _, indices in applying), 0
    for scorer, indices in applying:
        chosen = [samples[i] for i in indices]
        counted = _share_progress(progress, before=before, work=work, total=len(samples))
        results[scorer.name] = _score_one(lm, scorer, chosen, indices, store, config, cost, counted)
        before += len(chosen)
    if progress is not None:
        progress(len(samples))
    return ScoredSamples(
        results=results,
        samples_computed=len(cost.computed),
        samples_reused=cost.reused,
        forward_passes=cost.forward_passes,
        tokens_scored=cost.tokens_scored,
        seconds=time.perf_counter() - started,
        specs={spec.name: spec for result in results.values() for spec in result.scorer.metrics},
    )


def _share_progress(
    progress: ProgressCallback | None, *, before: int, work: int, total: int
) -> ProgressCallback | None:
    """Scorers run one after another over (parts of) the same samples: likelihood on all of them, answer
    scorers on those with a prompt. The count reported is the share of all scorers' work done, in samples,
    so it never passes the run's total (not 278 + 2 × 109 = 496 of 278)."""
    if progress is None:
        return None
    return lambda done: progress(total * (before + done) // work)


def fingerprint(lm: LoadedModel, scorer: Scorer, config: ScoringConfig, dataset_sha256: str) -> dict[str, str | int]:
    """Everything a score depends on, to store beside it and to explain a change.

    What loading converted or noticed comes first (`LoadedModel.notes`: an adapter's and its base's
    sha256, a bf16 checkpoint converted to fp32, tokenizer ids past the embedding). A scorer with
    settings of its own (generation settings, chat template, embedder, judge) adds them under
    `settings`, so that a change of them makes a comparison incomparable.
    """
    own = scorer.config_facts(lm)
    return {
        **({"settings": own} if own else {}),
        **lm.notes,
        "dataset_sha256": dataset_sha256,
        "weights_sha256": lm.weights_sha256,
        "tokenizer_hash": lm.tokenizer_hash,
        "scorer_version": f"{scorer.name}@{scorer.version}",
        "max_length": config.context_length(lm),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": lm.device.type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


@dataclass
class _Cost:
    # Indices (into the run's samples) that some scorer computed, and that any scorer read: a sample is
    # reused only when every scorer that applies to it found its result stored.
    computed: set[int] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)
    forward_passes: int = 0
    tokens_scored: int = 0

    @property
    def reused(self) -> int:
        return len(self.touched - self.computed)


def applicable(scorer: Scorer, samples: Sequence[Mapping[str, object]]) -> np.ndarray:
    """Indices of the samples that carry every field the scorer reads (`a|b`: either of them)."""
    keep = []
    for index, sample in enumerate(samples):
        missing = [
            name for name in scorer.fields if not any(has_field(sample, alternative) for alternative in name.split("|"))
        ]
        if not missing:
            keep.append(index)
        elif not scorer.skips_incomplete:
            where = sample.get("position", index)
            raise SampleError(f"sample {where} has no `{missing[0]}`; the {scorer.name} scorer needs {scorer.fields}")
    return np.array(keep, dtype=np.int64)


def has_field(sample: Mapping[str, object], name: str) -> bool:
    """Whether the sample has the field; a conversation has a `reference` when one of its turns has."""
    if name == "reference" and sample.get("turns"):
        return any(turn.get("reference") for turn in sample["turns"])
    return bool(sample.get(name))


def _score_one(
    lm: LoadedModel,
    scorer: Scorer,
    samples: list[Mapping[str, object]],
    indices: np.ndarray,
    store: ResultStore,
    config: ScoringConfig,
    cost: _Cost,
    progress: ProgressCallback | None,
) -> ScorerValues:
    # The run's settings and the scorer's own (its embedder's hash…) are the same for every sample: once.
    config_key = _config_key(lm, scorer, config)
    keys = [_result_key(lm, scorer, config_key, sample) for sample in samples]
    known = store.get_many(list(dict.fromkeys(keys)))
    missing = _samples_by_missing_key(keys, known)
    reused = len(keys) - sum(len(positions) for positions in missing.values())
    cost.touched.update(int(i) for i in indices)
    cost.computed.update(int(indices[p]) for positions in missing.values() for p in positions)
    computed: dict[ResultKey, SampleResult] = {}
    pending = list(missing)
    for start in range(0, len(pending), max(1, config.chunk_samples)):
        chunk = pending[start : start + config.chunk_samples]
        output = scorer.score(
            lm,
            [samples[missing[key][0]] for key in chunk],
            max_length=config.max_length,
            token_budget=config.token_budget,
            progress=offset_progress(progress, reused + start),
        )
        fresh = {key: SampleResult(values) for key, values in zip(chunk, output.values, strict=True)}
        store.put_many(fresh)
        computed.update(fresh)
        cost.forward_passes += output.forward_passes
        cost.tokens_scored += output.tokens_scored
    ordered = [known[key] if key in known else computed[key] for key in keys]
    return ScorerValues(scorer=scorer, indices=indices, values=_columns(ordered))


def _result_key(lm: LoadedModel, scorer: Scorer, config_key: str, sample: Mapping[str, object]) -> ResultKey:
    return ResultKey(
        weights_sha256=lm.weights_sha256,
        sample_sha256=scorer_sample_sha256(scorer, sample),
        scorer=scorer.name,
        scorer_version=scorer.version,
        config_key=config_key,
    )


def scorer_sample_sha256(scorer: Scorer, sample: Mapping[str, object]) -> str:
    """The hash of what `scorer` reads of `sample` (`Scorer.read_fields`): a likelihood
    result does not change when a prompt is added beside the text, so it stays cached, and the
    same text scored as golden sample and as traffic shares one result. A field the scorer does not
    read, or an empty one, counts as empty (so results cached before prompts existed stay valid)."""
    read = scorer.read_fields()
    return sample_sha256(
        str(sample.get("text") or "") if "text" in read else "",
        str(sample.get("reference") or "") if "reference" in read else "",
        prompt=sample.get("prompt") if "prompt" in read else None,
        messages=sample.get("messages") if "messages" in read else None,
        choices=sample.get("choices") if "choices" in read else None,
        answer=sample.get("answer") if "answer" in read else None,
        turns=sample.get("turns") if "turns" in read else None,
    )


def _config_key(lm: LoadedModel, scorer: Scorer, config: ScoringConfig) -> str:
    """The run's settings, plus the scorer's own (generation settings, embedder…) when it has any."""
    own = scorer.config_key(lm)
    return f"{config.cache_key(lm)};{own}" if own else config.cache_key(lm)


def _samples_by_missing_key(
    keys: list[ResultKey], known: Mapping[ResultKey, SampleResult]
) -> dict[ResultKey, list[int]]:
    """Sample positions of each key without a stored result (duplicates are scored once)."""
    missing: dict[ResultKey, list[int]] = {}
    for index, key in enumerate(keys):
        if key not in known:
            missing.setdefault(key, []).append(index)
    return missing


def _columns(results: list[SampleResult]) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(name for result in results for name in result.values))
    return {name: np.array([result.values[name] for result in results], dtype=np.float64) for name in names}
