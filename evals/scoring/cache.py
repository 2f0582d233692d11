"""Reuse of per-sample results: the model only runs on samples it has not scored before.

A result is keyed by what determines it: the weights, the sample's text and reference, the
scorer and its version, and the settings that change the numbers (context length and dtype).
Scoring the same weights twice runs no forward pass; a dataset version that adds 10 % new
samples runs the model on those 10 % only. Where results live is up to the caller: anything with
`get_many` / `put_many` (`ResultStore`) will do, from a dict to a database table.
"""

import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
import transformers

from evals.scoring import metrics
from evals.scoring.batching import ProgressCallback, offset_progress
from evals.scoring.causal import score_causal
from evals.scoring.embedding import score_similarity
from evals.scoring.errors import ScoringError
from evals.scoring.hashing import sample_sha256
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, LoadedModel

CAUSAL_NLL = "causal-nll"
COSINE_SIMILARITY = "cosine-similarity"
# Bump a version whenever a scorer's numbers change, so that stale cached results stop matching.
SCORER_VERSIONS = {CAUSAL_NLL: 1, COSINE_SIMILARITY: 1}
SCORER_FOR_KIND = {CAUSAL_LM: CAUSAL_NLL, EMBEDDING: COSINE_SIMILARITY}
METRICS_OF_SCORER = {
    CAUSAL_NLL: (metrics.BITS_PER_BYTE, metrics.PERPLEXITY),
    COSINE_SIMILARITY: (metrics.SIMILARITY,),
}

__all__ = [
    "CAUSAL_NLL",
    "COSINE_SIMILARITY",
    "InMemoryResultStore",
    "ResultKey",
    "ResultStore",
    "SCORER_VERSIONS",
    "SampleResult",
    "ScoredSamples",
    "ScoringConfig",
    "fingerprint",
    "sample_sha256",
    "score_samples",
]


class ResultKey(NamedTuple):
    weights_sha256: str
    sample_sha256: str
    scorer: str
    scorer_version: int
    config_key: str


@dataclass(frozen=True)
class SampleResult:
    """One sample's raw result: NLL (nats), tokens and bytes, or a similarity."""

    nll: float | None = None
    tokens: int | None = None
    bytes: int | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, float | int]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, float | int]) -> "SampleResult":
        return cls(**values)


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

    def context_length(self, lm: LoadedModel) -> int:
        return min(lm.max_length, self.max_length or lm.max_length)

    def cache_key(self, lm: LoadedModel) -> str:
        dtype = str(lm.dtype).removeprefix("torch.")
        return f"max_length={self.context_length(lm)};dtype={dtype}"


@dataclass(frozen=True)
class ScoredSamples:
    """Per-sample arrays in the order of the samples given, plus what the run cost."""

    scorer: str
    scorer_version: int
    nll: np.ndarray | None
    tokens: np.ndarray | None
    bytes: np.ndarray | None
    similarity: np.ndarray | None
    samples_computed: int
    samples_reused: int
    forward_passes: int
    tokens_scored: int
    seconds: float

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS_OF_SCORER[self.scorer]

    def per_sample(self, metric: str) -> np.ndarray:
        if metric == metrics.BITS_PER_BYTE:
            return metrics.bits_per_byte_per_sample(self.nll, self.bytes)
        if metric == metrics.PERPLEXITY:
            return metrics.perplexity_per_sample(self.nll, self.tokens)
        if metric == metrics.SIMILARITY:
            return self.similarity
        raise ValueError(f"unknown metric {metric!r}")

    def aggregate(self, metric: str, mask: np.ndarray | None = None) -> float:
        """The dataset-level value; `mask` selects samples (for example one category)."""
        selected = slice(None) if mask is None else mask
        if metric == metrics.BITS_PER_BYTE:
            return metrics.bits_per_byte(self.nll[selected], self.bytes[selected])
        if metric == metrics.PERPLEXITY:
            return metrics.perplexity(self.nll[selected], self.tokens[selected])
        if metric == metrics.SIMILARITY:
            return float(np.mean(self.similarity[selected]))
        raise ValueError(f"unknown metric {metric!r}")


def score_samples(
    lm: LoadedModel,
    samples: Sequence[Mapping[str, str | None]],
    store: ResultStore,
    config: ScoringConfig = ScoringConfig(),
    *,
    progress: ProgressCallback | None = None,
) -> ScoredSamples:
    """Score `samples` (mappings with `text` and optional `reference`), reusing stored results."""
    started = time.perf_counter()
    scorer = scorer_for(lm)
    keys = [_result_key(lm, scorer, config, sample) for sample in samples]
    known = store.get_many(list(dict.fromkeys(keys)))
    missing = _samples_by_missing_key(keys, known)
    reused = len(keys) - sum(len(indices) for indices in missing.values())
    todo = [samples[indices[0]] for indices in missing.values()]
    new_results, run = _compute(lm, scorer, todo, config, offset_progress(progress, reused))
    computed = dict(zip(missing, new_results, strict=True))
    store.put_many(computed)
    results = [known[key] if key in known else computed[key] for key in keys]
    if progress is not None:
        progress(len(keys))
    return ScoredSamples(
        scorer=scorer,
        scorer_version=SCORER_VERSIONS[scorer],
        **_columns(scorer, results),
        samples_computed=len(keys) - reused,
        samples_reused=reused,
        forward_passes=run.forward_passes,
        tokens_scored=run.tokens_scored,
        seconds=time.perf_counter() - started,
    )


def scorer_for(lm: LoadedModel) -> str:
    try:
        return SCORER_FOR_KIND[lm.kind]
    except KeyError:
        raise ScoringError(f"no scorer for {lm.kind} models") from None


def fingerprint(lm: LoadedModel, scorer: str, config: ScoringConfig, dataset_sha256: str) -> dict[str, str | int]:
    """Everything a score depends on, to store beside it and to explain a change."""
    return {
        "dataset_sha256": dataset_sha256,
        "weights_sha256": lm.weights_sha256,
        "tokenizer_sha256": lm.tokenizer_hash,
        "scorer": scorer,
        "scorer_version": SCORER_VERSIONS[scorer],
        "max_length": config.context_length(lm),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": lm.device.type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _result_key(lm: LoadedModel, scorer: str, config: ScoringConfig, sample: Mapping[str, str | None]) -> ResultKey:
    return ResultKey(
        weights_sha256=lm.weights_sha256,
        sample_sha256=sample_sha256(sample["text"], sample.get("reference")),
        scorer=scorer,
        scorer_version=SCORER_VERSIONS[scorer],
        config_key=config.cache_key(lm),
    )


def _samples_by_missing_key(
    keys: list[ResultKey], known: Mapping[ResultKey, SampleResult]
) -> dict[ResultKey, list[int]]:
    """Sample positions of each key without a stored result (duplicates are scored once)."""
    missing: dict[ResultKey, list[int]] = {}
    for index, key in enumerate(keys):
        if key not in known:
            missing.setdefault(key, []).append(index)
    return missing


class _RunCost(NamedTuple):
    forward_passes: int
    tokens_scored: int


def _compute(
    lm: LoadedModel,
    scorer: str,
    todo: Sequence[Mapping[str, str | None]],
    config: ScoringConfig,
    progress: ProgressCallback | None,
) -> tuple[list[SampleResult], _RunCost]:
    if not todo:
        return [], _RunCost(forward_passes=0, tokens_scored=0)
    texts = [sample["text"] for sample in todo]
    settings = {
        "max_length": config.max_length,
        "token_budget": config.token_budget,
        "progress": progress,
    }
    if scorer == CAUSAL_NLL:
        return _compute_nll(lm, texts, settings)
    references = [sample.get("reference") for sample in todo]
    return _compute_similarity(lm, texts, references, settings)


def _compute_nll(lm: LoadedModel, texts: list[str], settings: dict) -> tuple[list[SampleResult], _RunCost]:
    scores = score_causal(lm, texts, **settings)
    results = [
        SampleResult(nll=float(nll), tokens=int(tokens), bytes=int(n_bytes))
        for nll, tokens, n_bytes in zip(scores.nll, scores.tokens, scores.bytes, strict=True)
    ]
    return results, _RunCost(scores.forward_passes, scores.tokens_scored)


def _compute_similarity(
    lm: LoadedModel, texts: list[str], references: list[str | None], settings: dict
) -> tuple[list[SampleResult], _RunCost]:
    scores = score_similarity(lm, texts, references, **settings)
    results = [SampleResult(similarity=float(value)) for value in scores.similarity]
    return results, _RunCost(scores.forward_passes, scores.tokens_embedded)


def _columns(scorer: str, results: list[SampleResult]) -> dict[str, np.ndarray | None]:
    if scorer == CAUSAL_NLL:
        return {
            "nll": np.array([result.nll for result in results], dtype=np.float64),
            "tokens": np.array([result.tokens for result in results], dtype=np.int64),
            "bytes": np.array([result.bytes for result in results], dtype=np.int64),
            "similarity": None,
        }
    return {
        "nll": None,
        "tokens": None,
        "bytes": None,
        "similarity": np.array([result.similarity for result in results], dtype=np.float64),
    }
