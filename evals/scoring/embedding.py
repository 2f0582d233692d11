"""Embedding scorer: cosine similarity between each sample's text and its reference.

Embeddings are the attention-mask-weighted mean of the last hidden states, L2-normalised, as
sentence-transformers pools its mean-pooling models. Texts and references are embedded together,
sorted by length and batched by a token budget.

Embeddings are cached in the process (`EMBEDDING_CACHE`), keyed by the embedder's weights sha256,
its context, dtype and device, and the text's sha256: a reference is embedded once per worker, not
once per candidate, and so is an answer the candidate shares with the baseline; a text that occurs
twice in a call is embedded once. `TieredEmbeddings` puts a slower store behind that cache (the
workers' database table), so that a new process embeds only what no process embedded before.
"""

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch

from evals.scoring.batching import (
    ProgressCallback,
    SampleProgress,
    budget_batches,
    default_token_budget,
    map_batches,
)
from evals.scoring.errors import SampleError, ScoringError
from evals.scoring.loading import EMBEDDING, LoadedModel

# Embeddings the process keeps (DRIFTBOARD_EMBEDDING_CACHE_SIZE): 20,000 of MiniLM's 384 floats are 31 MB.
_DEFAULT_CACHED_EMBEDDINGS = 20_000


class EmbeddingKey(NamedTuple):
    """What a text's embedding depends on: the embedder's weights, the context the text is cut to, the
    dtype and device it runs in, and the text."""

    weights_sha256: str
    max_length: int
    dtype: str
    device: str
    text_sha256: str


class EmbeddingCache:
    """A process-wide LRU of unit-length embeddings; `computed` and `reused` count texts over its life."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity or int(os.environ.get("DRIFTBOARD_EMBEDDING_CACHE_SIZE", _DEFAULT_CACHED_EMBEDDINGS))
        self._embeddings: OrderedDict[EmbeddingKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0
        self.reused = 0

    def get_many(self, keys: Sequence[EmbeddingKey]) -> dict[EmbeddingKey, np.ndarray]:
        with self._lock:
            found = {}
            for key in keys:
                if key in self._embeddings:
                    self._embeddings.move_to_end(key)
                    found[key] = self._embeddings[key]
            self.reused += len(found)
            return found

    def put_many(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None:
        """Keep embeddings just computed."""
        self._keep(embeddings, computed=True)

    def adopt(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None:
        """Keep embeddings another store found (counted as reused, not computed)."""
        self._keep(embeddings, computed=False)

    def _keep(self, embeddings: Mapping[EmbeddingKey, np.ndarray], *, computed: bool) -> None:
        with self._lock:
            if computed:
                self.computed += len(embeddings)
            else:
                self.reused += len(embeddings)
            self._embeddings.update(embeddings)
            while len(self._embeddings) > self.capacity:
                self._embeddings.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._embeddings.clear()

    def __len__(self) -> int:
        return len(self._embeddings)


EMBEDDING_CACHE = EmbeddingCache()


class EmbeddingStore(Protocol):
    def get_many(self, keys: Sequence[EmbeddingKey]) -> dict[EmbeddingKey, np.ndarray]:
        """The stored embeddings among `keys`; absent keys are left out."""
        ...

    def put_many(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None: ...


class TieredEmbeddings:
    """The process's cache in front of a slower, shared store: a text is looked up in the process first,
    then in the store (what the store finds is kept in the process), and what is computed goes to both."""

    def __init__(self, front: EmbeddingCache, back: EmbeddingStore) -> None:
        self.front = front
        self.back = back

    def get_many(self, keys: Sequence[EmbeddingKey]) -> dict[EmbeddingKey, np.ndarray]:
        found = self.front.get_many(keys)
        rest = [key for key in keys if key not in found]
        if rest:
            stored = self.back.get_many(rest)
            self.front.adopt(stored)
            found.update(stored)
        return found

    def put_many(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None:
        self.front.put_many(embeddings)
        self.back.put_many(embeddings)


@dataclass(frozen=True)
class SimilarityScores:
    similarity: np.ndarray
    forward_passes: int
    tokens_embedded: int
    seconds: float
    # Distinct texts embedded by this call, and those found in the cache.
    texts_embedded: int = 0
    texts_reused: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.similarity))


def score_similarity(
    lm: LoadedModel,
    texts: Sequence[str],
    references: Sequence[str | None],
    *,
    max_length: int | None = None,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
    cache: EmbeddingStore | None = EMBEDDING_CACHE,
) -> SimilarityScores:
    """Per-sample cosine similarity (float64) of `texts[i]` and `references[i]`.

    Texts longer than the model's context (or `max_length`) are truncated. Embeddings `cache` holds
    are reused and those computed are put there (None: every text is embedded).
    """
    started = time.perf_counter()
    _require_embedding_model(lm)
    _require_references(references)
    n_samples = len(texts)
    embedder = _Embedder(lm, max_length, token_budget)
    embeddings, reused = embedder.embed_cached(
        [*texts, *references], np.tile(np.arange(n_samples), 2), n_samples, progress, cache
    )
    similarity = np.einsum("nd,nd->n", embeddings[:n_samples].astype(np.float64), embeddings[n_samples:])
    return SimilarityScores(
        similarity=similarity,
        forward_passes=embedder.forward_passes,
        tokens_embedded=embedder.tokens_embedded,
        seconds=time.perf_counter() - started,
        texts_embedded=embedder.texts_embedded,
        texts_reused=reused,
    )


def embed_texts(
    lm: LoadedModel,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    token_budget: int | None = None,
) -> np.ndarray:
    """Unit-length embeddings, one row per text (float32)."""
    _require_embedding_model(lm)
    tracker = SampleProgress(np.ones(len(texts), dtype=np.int64), None)
    embedder = _Embedder(lm, max_length, token_budget)
    return embedder.embed(texts, np.arange(len(texts)), tracker)


def embedding_keys(lm: LoadedModel, texts: Sequence[str], *, max_length: int | None = None) -> list[EmbeddingKey]:
    """The cache keys of `texts` embedded by `lm`, cut to `max_length` (default: the model's context)."""
    context = min(lm.max_length, max_length or lm.max_length)
    return [_embedding_key(lm, context, text) for text in texts]


def _embedding_key(lm: LoadedModel, context: int, text: str) -> EmbeddingKey:
    return EmbeddingKey(
        lm.weights_sha256,
        context,
        str(lm.dtype).removeprefix("torch."),
        lm.device.type,
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _require_embedding_model(lm: LoadedModel) -> None:
    if lm.kind != EMBEDDING:
        raise ScoringError(f"similarity needs an embedding model, not a {lm.kind} model")


def _require_references(references: Sequence[str | None]) -> None:
    missing = [index for index, reference in enumerate(references) if not reference]
    if missing:
        raise SampleError(
            f"{len(missing)} samples have no reference to compare with "
            f"(first at position {missing[0]}); similarity needs one for every sample"
        )


class _Embedder:
    def __init__(self, lm: LoadedModel, max_length: int | None, token_budget: int | None) -> None:
        self.lm = lm
        self.max_length = min(lm.max_length, max_length or lm.max_length)
        self.token_budget = token_budget or lm.token_budget or default_token_budget(lm.device)
        self.forward_passes = 0
        self.tokens_embedded = 0
        self.texts_embedded = 0

    def embed_cached(
        self,
        texts: Sequence[str],
        owners: np.ndarray,
        n_samples: int,
        progress: ProgressCallback | None,
        cache: EmbeddingStore | None,
    ) -> tuple[np.ndarray, int]:
        """Embeddings of `texts` (each owned by a sample, for progress), each distinct text embedded once
        and only when `cache` lacks it; returns them with the number of distinct texts found cached."""
        keys = [self._key(text) for text in texts]
        first = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        found = cache.get_many(list(first)) if cache is not None else {}
        missing = [key for key in first if key not in found]
        missing_owners = np.array([owners[first[key]] for key in missing], dtype=np.int64)
        tracker = SampleProgress(np.bincount(missing_owners, minlength=n_samples), progress)
        if missing:
            computed = self.embed([texts[first[key]] for key in missing], missing_owners, tracker)
            fresh = dict(zip(missing, computed, strict=True))
            if cache is not None:
                cache.put_many(fresh)
            found.update(fresh)
        else:
            tracker.start()
        embeddings = np.empty((len(texts), self.lm.model.config.hidden_size), dtype=np.float32)
        for index, key in enumerate(keys):
            embeddings[index] = found[key]
        return embeddings, len(first) - len(missing)

    def _key(self, text: str) -> EmbeddingKey:
        return _embedding_key(self.lm, self.max_length, text)

    def embed(self, texts: Sequence[str], owners: np.ndarray, tracker: SampleProgress) -> np.ndarray:
        encoded = self.lm.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, return_attention_mask=False
        )
        features = [dict(zip(encoded, values, strict=True)) for values in zip(*encoded.values(), strict=True)]
        lengths = np.array([len(feature["input_ids"]) for feature in features], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        batches = (
            (order[batch], self._padded([features[i] for i in order[batch]]))
            for batch in budget_batches(lengths[order], self.token_budget)
        )
        embeddings = np.empty((len(texts), self.lm.model.config.hidden_size), dtype=np.float32)
        tracker.start()
        for (indices, inputs), pooled in map_batches(self._pooled, batches, self.lm.device):
            embeddings[indices] = pooled
            self.forward_passes += 1
            self.tokens_embedded += int(inputs["attention_mask"].sum())
            self.texts_embedded += len(indices)
            tracker.finish_parts(owners[indices])
        return embeddings

    def _padded(self, features: list[dict]) -> dict[str, torch.Tensor]:
        padded = self.lm.tokenizer.pad(features, padding=True, return_tensors="pt")
        return {name: tensor.to(self.lm.device) for name, tensor in padded.items()}

    def _pooled(self, batch: tuple[np.ndarray, dict[str, torch.Tensor]]) -> np.ndarray:
        """Mean of the last hidden states over real tokens, scaled to unit length."""
        _, inputs = batch
        hidden = self.lm.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
