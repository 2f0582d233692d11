"""Metric definitions over per-sample arrays (see DESIGN.md, "Metrics")."""

import math

import numpy as np

BITS_PER_BYTE = "bits_per_byte"
PERPLEXITY = "perplexity"
SIMILARITY = "similarity"

HIGHER_IS_BETTER = {BITS_PER_BYTE: False, PERPLEXITY: False, SIMILARITY: True}


def bits_per_byte(nll: np.ndarray, n_bytes: np.ndarray) -> float:
    """Σ NLL (nats) / (ln 2 · Σ UTF-8 bytes) over all samples."""
    return float(np.sum(nll) / (math.log(2) * np.sum(n_bytes)))


def perplexity(nll: np.ndarray, tokens: np.ndarray) -> float:
    """exp(Σ NLL / Σ tokens) over all samples (tokenizer-dependent)."""
    return float(np.exp(np.sum(nll) / np.sum(tokens)))


def bits_per_byte_per_sample(nll: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return nll / (math.log(2) * n_bytes)


def perplexity_per_sample(nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(nll / tokens)
