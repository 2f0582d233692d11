import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

from evals.scoring.causal import score_causal
from evals.scoring.errors import (
    ScoringError,
    UnsafeWeightsError,
    VocabularyMismatchError,
    WeightsFormatError,
    WeightsMismatchError,
)
from evals.scoring.hashing import file_sha256, weights_sha256
from evals.scoring.loading import ModelCache, load_model, resolve_device


@pytest.fixture(scope="module")
def state_dict(tiny_gpt2_dir) -> dict[str, torch.Tensor]:
    return GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).state_dict()


def other_shape_state_dict(tiny_gpt2_dir, **changes) -> dict[str, torch.Tensor]:
    config = GPT2LMHeadModel.config_class.from_pretrained(tiny_gpt2_dir)
    for name, value in changes.items():
        setattr(config, name, value)
    return GPT2LMHeadModel(config).state_dict()


def save_untied(state: dict[str, torch.Tensor], path) -> None:
    """Save as safetensors, which stores the head tied to the input embedding only once."""
    save_file({name: tensor.contiguous() for name, tensor in state.items() if name != "lm_head.weight"}, path)


def test_it_scores_a_state_dict_file_like_the_folder_it_came_from(tiny_lm, tiny_gpt2_dir, state_dict, tmp_path, texts):
    safetensors_path = tmp_path / "weights.safetensors"
    save_file(
        {name: tensor.contiguous() for name, tensor in state_dict.items() if name != "lm_head.weight"}, safetensors_path
    )
    bin_path = tmp_path / "weights.bin"
    torch.save(state_dict, bin_path)
    expected = score_causal(tiny_lm, texts[:5]).nll
    for path in (safetensors_path, bin_path):
        loaded = load_model(path, base_dir=tiny_gpt2_dir, device="cpu")
        assert loaded.weights_sha256 == file_sha256(path)
        np.testing.assert_allclose(score_causal(loaded, texts[:5]).nll, expected, rtol=1e-6)


class RunsCodeWhenUnpickled:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_it_refuses_a_bin_that_would_run_code(tiny_gpt2_dir, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.bin"
    with open(path, "wb") as handle:
        pickle.dump({"transformer.wte.weight": RunsCodeWhenUnpickled(str(marker))}, handle, protocol=2)
    with pytest.raises(UnsafeWeightsError, match="evil.bin is refused"):
        load_model(path, base_dir=tiny_gpt2_dir, device="cpu")
    assert not marker.exists()


def test_it_refuses_weights_trained_for_another_vocabulary(tiny_gpt2_dir, tmp_path):
    path = tmp_path / "other-vocab.safetensors"
    save_untied(other_shape_state_dict(tiny_gpt2_dir, vocab_size=3000), path)
    with pytest.raises(VocabularyMismatchError, match="vocabulary of 3000 tokens"):
        load_model(path, base_dir=tiny_gpt2_dir, device="cpu")


@pytest.mark.parametrize(
    ("change", "message"), [({"n_layer": 3}, "unexpected: transformer.h.2"), ({"n_inner": 128}, "wrong shape")]
)
def test_it_refuses_tensors_that_do_not_fit_the_config(tiny_gpt2_dir, tmp_path, change, message):
    path = tmp_path / "other-shape.safetensors"
    save_untied(other_shape_state_dict(tiny_gpt2_dir, **change), path)
    with pytest.raises(WeightsMismatchError, match=message):
        load_model(path, base_dir=tiny_gpt2_dir, device="cpu")


def test_it_refuses_missing_tensors(tiny_gpt2_dir, state_dict, tmp_path):
    path = tmp_path / "partial.safetensors"
    save_file(
        {name: t.contiguous() for name, t in state_dict.items() if ".h.1." not in name and name != "lm_head.weight"},
        path,
    )
    with pytest.raises(WeightsMismatchError, match="missing: transformer.h.1"):
        load_model(path, base_dir=tiny_gpt2_dir, device="cpu")


def test_it_explains_unreadable_or_incomplete_input(tiny_gpt2_dir, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsFormatError, match="not a valid safetensors file"):
        load_model(garbage, base_dir=tiny_gpt2_dir, device="cpu")
    with pytest.raises(ScoringError, match="base folder"):
        load_model(garbage, device="cpu")
    with pytest.raises(WeightsFormatError, match="not found"):
        load_model(tmp_path / "absent", device="cpu")


def test_it_keeps_recent_models_and_evicts_the_oldest(tiny_gpt2_dir, state_dict, tmp_path):
    bin_path = tmp_path / "weights.bin"
    torch.save(state_dict, bin_path)
    cache = ModelCache(capacity=1)
    first = cache.get(tiny_gpt2_dir, device="cpu")
    assert cache.get(tiny_gpt2_dir, device="cpu") is first
    cache.get(bin_path, base_dir=tiny_gpt2_dir, device="cpu")
    assert len(cache) == 1
    assert cache.get(tiny_gpt2_dir, device="cpu", weights_sha256=weights_sha256(tiny_gpt2_dir)) is not first


def test_it_takes_the_device_from_the_environment(monkeypatch):
    monkeypatch.setenv("DRIFTBOARD_DEVICE", "meta")
    assert resolve_device("auto") == torch.device("meta")
    assert resolve_device("cpu") == torch.device("cpu")
