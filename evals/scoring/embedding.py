"""Embedding scorer: cosine similarity between each sample's text and its reference.

Embeddings are the attention-mask-weighted mean of the last hidden states, L2-normalised, as
sentence-transformers pools its mean-pooling models. Texts and references are embedded together,
sorted by length and batched by a token budget.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SimilarityScores:
    similarity: np.ndarray
    forward_passes: int
    tokens_embedded: int
    seconds: float

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
) -> SimilarityScores:
    """Per-sample cosine similarity (float64) of `texts[i]` and `references[i]`.

    Texts longer than the model's context (or `max_length`) are truncated.
    """
    started = time.perf_counter()
    _require_embedding_model(lm)
    _require_references(references)
    n_samples = len(texts)
    owners = np.tile(np.arange(n_samples), 2)
    tracker = SampleProgress(np.bincount(owners, minlength=n_samples), progress)
    embedder = _Embedder(lm, max_length, token_budget)
    embeddings = embedder.embed([*texts, *references], owners, tracker)
    similarity = np.einsum("nd,nd->n", embeddings[:n_samples].astype(np.float64), embeddings[n_samples:])
    return SimilarityScores(
        similarity=similarity,
        forward_passes=embedder.forward_passes,
        tokens_embedded=embedder.tokens_embedded,
        seconds=time.perf_counter() - started,
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
