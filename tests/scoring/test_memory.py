"""The memory guard: weights that cannot fit fail at once with the numbers, before any tensor is read."""

import json
import struct

import pytest
import torch

from evals.scoring import memory
from evals.scoring.loading import load_model, weight_files
from tests.scoring.tiny_lm import write_decoder_folder


def claim_huge_tensor(folder, rows: int, columns: int) -> None:
    """Replace the weights by a safetensors header claiming one huge F32 tensor and no data."""
    for file in folder.glob("*.safetensors"):
        file.unlink()
    header = json.dumps(
        {"model.embed_tokens.weight": {"dtype": "F32", "shape": [rows, columns], "data_offsets": [0, 0]}}
    )
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())


def test_it_estimates_the_bytes_of_the_loaded_weights(tiny_gpt2_dir, tiny_lm):
    loaded = sum(p.numel() * p.element_size() for p in tiny_lm.model.parameters())

    estimated = memory.weights_bytes(weight_files(tiny_gpt2_dir), torch.float32)
    assert loaded * 0.9 < estimated <= loaded * 1.1
    assert memory.weights_bytes(weight_files(tiny_gpt2_dir), torch.bfloat16) == pytest.approx(estimated / 2, rel=0.01)


def test_it_fails_at_once_when_a_header_claims_more_than_the_worker_has(tmp_path, tiny_tokenizer, monkeypatch):
    folder = write_decoder_folder(tmp_path / "huge", tiny_tokenizer, "llama")
    claim_huge_tensor(folder, rows=1 << 20, columns=1 << 14)  # 64 GiB in fp32
    monkeypatch.setenv("DRIFTBOARD_WORKER_MEMORY_GIB", "8")

    with pytest.raises(
        memory.InsufficientMemoryError, match=r"needs ~64\.\d+ GiB, this worker has 8\.00 GiB free"
    ) as error:
        load_model(folder, device="cpu")
    assert error.value.size_class == "scoring-80g"


def test_it_loads_what_fits_under_the_limit(tiny_gpt2_dir, monkeypatch):
    monkeypatch.setenv("DRIFTBOARD_WORKER_MEMORY_GIB", "1")
    assert load_model(tiny_gpt2_dir, device="cpu").embedding_rows


def test_it_counts_the_activations_of_the_token_budget(tiny_gpt2_dir, monkeypatch):
    weights = memory.weights_bytes(weight_files(tiny_gpt2_dir), torch.float32)
    monkeypatch.setenv("DRIFTBOARD_WORKER_MEMORY_GIB", str((weights + 1024) / memory.GIB))

    with pytest.raises(memory.InsufficientMemoryError, match="needs ~"):
        load_model(tiny_gpt2_dir, device="cpu")


def test_it_names_the_smallest_queue_that_holds_the_weights():
    assert memory.size_class(3 * memory.GIB) == "scoring-16g"
    assert memory.size_class(30 * memory.GIB) == "scoring-40g"
    assert memory.size_class(500 * memory.GIB) == "scoring-160g"


def test_the_gpu_token_budget_grows_with_free_memory():
    per_token = 200_000
    small, large = (
        memory.gpu_token_budget(per_token, 2 * memory.GIB),
        memory.gpu_token_budget(per_token, 40 * memory.GIB),
    )
    assert small < large and large % 256 == 0
    assert large * per_token <= 40 * memory.GIB * 0.8
    assert memory.gpu_token_budget(per_token, 0) == 2048
