"""LoRA adapters: scored as lm-evaluation-harness's `HFLM(pretrained=BASE, peft=ADAPTER)` does,
with the base read from disk once however many adapters of it are scored."""

import json
import pickle

import numpy as np
import pytest
import torch

from evals.scoring import adapters
from evals.scoring.causal import score_causal
from evals.scoring.errors import ScoringError, UnsafeWeightsError, WeightsMismatchError
from evals.scoring.hashing import weights_sha256
from evals.scoring.loading import ModelCache, load_model
from evals.scoring.state_dicts import read_state_dict
from tests.scoring.lm_eval_reference import lm_eval_nll
from tests.scoring.test_loading import RunsCodeWhenUnpickled
from tests.scoring.tiny_lm import write_lora_adapter

RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_gpt2_dir):
    folder = tmp_path_factory.mktemp("adapter")
    return write_lora_adapter(folder, tiny_gpt2_dir, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)


def copied_adapter(adapter_dir, destination, **config_changes):
    destination.mkdir()
    for file in adapter_dir.iterdir():
        (destination / file.name).write_bytes(file.read_bytes())
    config = json.loads((destination / adapters.ADAPTER_CONFIG).read_text())
    (destination / adapters.ADAPTER_CONFIG).write_text(json.dumps({**config, **config_changes}))
    return destination


def test_it_matches_the_harness_peft_path_per_sample(tiny_gpt2_dir, adapter_dir, texts):
    lm = load_model(adapter_dir, base_dir=tiny_gpt2_dir, device="cpu")
    ours = score_causal(lm, texts)

    expected = lm_eval_nll(tiny_gpt2_dir, texts, peft=adapter_dir)
    np.testing.assert_allclose(ours.nll, expected, rtol=RELATIVE_TOLERANCE)
    assert ours.tokens.max() > 3 * lm.max_length  # texts of several windows


def test_it_changes_the_scores_of_the_base_and_leaves_the_base_untouched(tiny_lm, tiny_gpt2_dir, adapter_dir, texts):
    before = score_causal(tiny_lm, texts[:5]).nll
    adapted = load_model(adapter_dir, base_dir=tiny_gpt2_dir, device="cpu")

    assert np.abs(score_causal(adapted, texts[:5]).nll / before - 1).max() > 0.01
    np.testing.assert_array_equal(score_causal(tiny_lm, texts[:5]).nll, before)


def test_it_keys_results_by_the_adapter_and_the_base(tiny_gpt2_dir, adapter_dir):
    lm = load_model(adapter_dir, base_dir=tiny_gpt2_dir, device="cpu")

    adapter_sha, base_sha = weights_sha256(adapter_dir), weights_sha256(tiny_gpt2_dir)
    assert lm.weights_sha256 == adapters.combined_sha256(adapter_sha, base_sha)
    assert lm.weights_sha256 not in {adapter_sha, base_sha}
    assert lm.notes["adapter_sha256"] == adapter_sha and lm.notes["base_sha256"] == base_sha
    assert lm.notes["adapter_rank"] == 4 and lm.notes["adapter_target_modules"] == "c_attn,c_fc"


def test_it_finds_a_local_base_from_the_adapter_config(tiny_gpt2_dir, adapter_dir, texts):
    assert adapters.adapter_base_dir(adapter_dir, None) == tiny_gpt2_dir
    lm = load_model(adapter_dir, device="cpu")
    given = load_model(adapter_dir, base_dir=tiny_gpt2_dir, device="cpu")
    np.testing.assert_array_equal(score_causal(lm, texts[:3]).nll, score_causal(given, texts[:3]).nll)


def test_it_asks_for_the_base_when_the_adapter_names_a_hub_model(tmp_path, adapter_dir):
    remote = copied_adapter(adapter_dir, tmp_path / "remote-adapter", base_model_name_or_path="meta-llama/Llama-3.2-1B")

    with pytest.raises(ScoringError, match="--base-dir or --family"):
        load_model(remote, device="cpu")


def test_it_loads_the_base_once_for_ten_adapters(tmp_path, tiny_gpt2_dir, texts):
    cache = ModelCache(capacity=2)
    folders = [
        write_lora_adapter(tmp_path / f"adapter-{seed}", tiny_gpt2_dir, target_modules=["c_attn"], seed=seed)
        for seed in range(10)
    ]
    scores = [
        score_causal(cache.get(folder, base_dir=tiny_gpt2_dir, device="cpu"), texts[:2]).nll for folder in folders
    ]

    assert cache.loads_from_disk == 1
    assert len({tuple(values) for values in scores}) == 10
    assert cache.get(folders[-1], base_dir=tiny_gpt2_dir, device="cpu") is cache.get(
        folders[-1], base_dir=tiny_gpt2_dir, device="cpu"
    )


def test_it_refuses_an_adapter_for_modules_the_base_lacks(tmp_path, tiny_gpt2_dir, adapter_dir):
    wrong = copied_adapter(adapter_dir, tmp_path / "wrong-targets", target_modules=["q_proj", "c_fc"])

    with pytest.raises(WeightsMismatchError, match="targets q_proj, which the gpt2 base does not have"):
        load_model(wrong, base_dir=tiny_gpt2_dir, device="cpu")


def test_it_refuses_an_adapter_whose_tensors_have_another_rank(tmp_path, tiny_gpt2_dir, adapter_dir):
    wrong = copied_adapter(adapter_dir, tmp_path / "wrong-rank", r=8)

    with pytest.raises(WeightsMismatchError, match="size mismatch"):
        load_model(wrong, base_dir=tiny_gpt2_dir, device="cpu")


def test_it_reads_bin_adapter_weights_only_as_tensors(tmp_path, tiny_gpt2_dir, adapter_dir, texts):
    as_bin = copied_adapter(adapter_dir, tmp_path / "bin-adapter")
    state = read_state_dict(as_bin / "adapter_model.safetensors")
    (as_bin / "adapter_model.safetensors").unlink()
    torch.save(state, as_bin / "adapter_model.bin")
    expected = score_causal(load_model(adapter_dir, base_dir=tiny_gpt2_dir, device="cpu"), texts[:3]).nll
    np.testing.assert_allclose(
        score_causal(load_model(as_bin, base_dir=tiny_gpt2_dir, device="cpu"), texts[:3]).nll, expected, rtol=1e-6
    )

    marker = tmp_path / "code-ran"
    with open(as_bin / "adapter_model.bin", "wb") as handle:
        pickle.dump({"weight": RunsCodeWhenUnpickled(str(marker))}, handle, protocol=2)
    with pytest.raises(UnsafeWeightsError, match="adapter_model.bin is refused"):
        load_model(as_bin, base_dir=tiny_gpt2_dir, device="cpu")
    assert not marker.exists()
