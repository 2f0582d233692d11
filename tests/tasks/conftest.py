"""Tiny causal models for the task-format tests, built once per session from configs (random
weights, fixed seeds) with tokenizers trained on the standard library's docstrings: a GPT-2, a
Llama whose tokenizer puts BOS in front of every text, and a Qwen2 with the end-of-text token only."""

import os
from pathlib import Path

import pytest

from evals.scoring.loading import CAUSAL_LM, LoadedModel, load_model
from tests.scoring.tiny_lm import (
    stdlib_docstrings,
    train_bos_eos_tokenizer,
    train_tokenizer,
    write_decoder_folder,
    write_gpt2_folder,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ARCHITECTURES = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="session")
def task_model_dirs(tmp_path_factory) -> dict[str, Path]:
    corpus = stdlib_docstrings(100_000)
    plain, with_bos = train_tokenizer(corpus, vocab_size=800), train_bos_eos_tokenizer(corpus, vocab_size=800)
    root = tmp_path_factory.mktemp("task-models")
    return {
        "gpt2": write_gpt2_folder(root / "gpt2", plain, n_positions=64, n_embd=32, n_layer=2, n_head=2),
        "llama": write_decoder_folder(root / "llama", with_bos, "llama"),
        "qwen2": write_decoder_folder(root / "qwen2", plain, "qwen2"),
    }


@pytest.fixture(scope="session")
def task_models(task_model_dirs) -> dict[str, LoadedModel]:
    return {name: load_model(folder, kind=CAUSAL_LM, device="cpu") for name, folder in task_model_dirs.items()}
