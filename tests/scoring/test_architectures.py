"""Llama-, Qwen2- and Mistral-shaped decoders (BOS differs from EOS), sharded checkpoints, bf16 /
fp16 folders and tokenizers with ids past the embedding, each against lm-evaluation-harness; and
generation through a chat template against transformers' own `generate`."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from evals.scoring.causal import score_causal
from evals.scoring.errors import VocabularyMismatchError
from evals.scoring.generation import GenerationSettings, generate, prompt_token_ids
from evals.scoring.hashing import weights_sha256
from evals.scoring.loading import load_model
from tests.scoring.lm_eval_reference import lm_eval_nll
from tests.scoring.tiny_lm import stdlib_docstrings, train_bos_eos_tokenizer, write_decoder_folder

RELATIVE_TOLERANCE = 1e-4
CHAT_TOKEN = "<|im_start|>"


@pytest.fixture(scope="module")
def bos_eos_tokenizer():
    return train_bos_eos_tokenizer(stdlib_docstrings(200_000), vocab_size=1500)


@pytest.fixture(scope="module")
def decoder_dirs(tmp_path_factory, bos_eos_tokenizer):
    return {
        architecture: write_decoder_folder(tmp_path_factory.mktemp(architecture), bos_eos_tokenizer, architecture)
        for architecture in ("llama", "qwen2", "mistral")
    }


def test_the_tokenizer_puts_a_bos_unlike_its_eos_in_front(bos_eos_tokenizer):
    assert bos_eos_tokenizer.bos_token_id != bos_eos_tokenizer.eos_token_id
    assert bos_eos_tokenizer("abc")["input_ids"][0] == bos_eos_tokenizer.bos_token_id


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral"])
def test_it_matches_the_harness_on_texts_of_several_windows(decoder_dirs, texts, architecture):
    lm = load_model(decoder_dirs[architecture], device="cpu")
    ours = score_causal(lm, texts)

    assert lm.model.config.model_type == architecture
    assert ours.tokens.max() > 3 * lm.max_length
    expected = lm_eval_nll(decoder_dirs[architecture], texts, add_bos_token=False)
    np.testing.assert_allclose(ours.nll, expected, rtol=RELATIVE_TOLERANCE)


def test_a_sharded_checkpoint_scores_as_the_single_file(tmp_path, decoder_dirs, texts):
    single = decoder_dirs["llama"]
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(single).save_pretrained(sharded, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (sharded / name).write_bytes((single / name).read_bytes())
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 3 and all((sharded / shard).is_file() for shard in shards)

    lm = load_model(sharded, device="cpu")
    np.testing.assert_array_equal(
        score_causal(lm, texts).nll, score_causal(load_model(single, device="cpu"), texts).nll
    )
    assert lm.weights_sha256 == weights_sha256(sharded)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_folder_loads_in_the_worker_dtype_and_says_so(tmp_path, bos_eos_tokenizer, texts, dtype):
    folder = write_decoder_folder(tmp_path / "half", bos_eos_tokenizer, "llama", dtype=dtype)
    lm = load_model(folder, device="cpu")

    assert next(lm.model.parameters()).dtype == torch.float32
    stored = str(dtype).removeprefix("torch.")
    assert lm.notes["dtype_conversion"] == f"{stored} -> float32"
    np.testing.assert_allclose(
        score_causal(lm, texts[:8]).nll,
        lm_eval_nll(folder, texts[:8], add_bos_token=False, dtype="float32"),
        rtol=RELATIVE_TOLERANCE,
    )


@pytest.fixture(scope="module")
def extra_token_dir(tmp_path_factory, texts):
    """A tokenizer with one added chat token past the weights' embedding rows."""
    tokenizer = train_bos_eos_tokenizer(stdlib_docstrings(200_000), vocab_size=1500)
    rows = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": [CHAT_TOKEN]})
    assert len(tokenizer) == rows + 1
    return write_decoder_folder(tmp_path_factory.mktemp("extra-token"), tokenizer, "llama", vocab_size=rows)


def test_a_tokenizer_with_an_id_past_the_embedding_scores_texts_that_never_produce_it(extra_token_dir, texts):
    lm = load_model(extra_token_dir, device="cpu")

    assert lm.notes["tokenizer_ids_beyond_embedding"] == 1
    np.testing.assert_allclose(
        score_causal(lm, texts).nll, lm_eval_nll(extra_token_dir, texts, add_bos_token=False), rtol=RELATIVE_TOLERANCE
    )


def test_a_text_that_produces_an_id_past_the_embedding_is_refused(extra_token_dir, texts):
    lm = load_model(extra_token_dir, device="cpu")

    with pytest.raises(VocabularyMismatchError, match=r"<\|im_start\|>.*embedding rows"):
        score_causal(lm, [texts[0], f"{CHAT_TOKEN}user hello"])


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral"])
def test_it_generates_from_a_chat_template_as_transformers_does(decoder_dirs, architecture):
    lm = load_model(decoder_dirs[architecture], device="cpu")
    lm.tokenizer.chat_template = CHAT_TEMPLATE
    messages = [{"role": "user", "content": "Return the sum of two numbers."}]
    settings = GenerationSettings(max_new_tokens=12, chat_template=True)

    prompt = prompt_token_ids(lm.tokenizer, [messages], settings, max_prompt=lm.max_length)[0]
    assert prompt[0] == lm.tokenizer.bos_token_id and prompt.count(lm.tokenizer.bos_token_id) == 1
    expected = lm.model.generate(
        input_ids=torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=lm.tokenizer.eos_token_id,
        pad_token_id=lm.tokenizer.eos_token_id,
    )[0, len(prompt) :].tolist()
    if lm.tokenizer.eos_token_id in expected:
        expected = expected[: expected.index(lm.tokenizer.eos_token_id)]
    answer = generate(lm, [messages], settings)

    assert answer.texts[0] == lm.tokenizer.decode(expected, skip_special_tokens=True)
    assert answer.tokens[0] == len(expected) > 0
