"""The generation engine against one-prompt-at-a-time greedy decoding by transformers, and against
lm-evaluation-harness's `generate_until`, on the demo model (fp32, CPU)."""

import copy
from dataclasses import replace

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from evals.scoring.errors import SampleError, ScoringError
from evals.scoring.generation import (
    EOS,
    LENGTH,
    STOP,
    GenerationSettings,
    batched,
    chat_template_sha256,
    cut_at_stop,
    generate,
    prompt_token_ids,
)

MAX_NEW = 16


def alone(lm, prompts, settings: GenerationSettings) -> list[tuple[str, int]]:
    """(answer, tokens) of each prompt decoded on its own by `model.generate`, no padding."""
    max_prompt = lm.max_length - settings.max_new_tokens
    eos = lm.tokenizer.eos_token_id
    answers = []
    with torch.inference_mode():
        for ids in prompt_token_ids(lm.tokenizer, prompts, settings, max_prompt):
            output = lm.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                pad_token_id=eos,
            )
            tokens = output[0, len(ids) :].tolist()
            tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
            answers.append((cut_at_stop(lm.tokenizer.decode(tokens, skip_special_tokens=True), settings.stop), tokens))
    return answers


@pytest.fixture(scope="module")
def decoded_alone(demo_lm, prompts) -> list[tuple[str, list[int]]]:
    return alone(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW))


@pytest.mark.parametrize("token_budget", [1, 200, 100_000])
def test_it_decodes_batches_of_mixed_lengths_like_each_prompt_alone(demo_lm, prompts, decoded_alone, token_budget):
    result = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW), token_budget=token_budget)
    expected = decoded_alone
    assert result.texts == [text for text, _ in expected]
    assert result.tokens.tolist() == [len(tokens) for _, tokens in expected]
    assert len(set(result.prompt_tokens.tolist())) > 5, "the prompts have mixed lengths"
    assert result.prompt_tokens.max() == demo_lm.max_length - MAX_NEW, "the longest are left-truncated"


def test_it_runs_one_forward_pass_per_new_token_of_each_batch(demo_lm, prompts):
    result = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW), token_budget=100_000)
    assert result.forward_passes == max(result.tokens.max(), 1) + (result.finish.count(LENGTH) == 0)
    assert result.forward_passes <= MAX_NEW
    assert result.tokens_generated == result.tokens.sum() > 0


def test_it_applies_the_chat_template_to_messages_and_on_request_to_plain_prompts(chat_lm, prompts):
    conversations = [
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": prompt}]
        for prompt in prompts[:8]
    ]
    settings = GenerationSettings(max_new_tokens=MAX_NEW)
    templated = GenerationSettings(max_new_tokens=MAX_NEW, chat_template=True)
    chats = generate(chat_lm, conversations, settings, token_budget=300)
    plain_in_template = generate(chat_lm, prompts[:8], templated, token_budget=300)
    assert chats.texts == [text for text, _ in alone(chat_lm, conversations, settings)]
    assert plain_in_template.texts == [text for text, _ in alone(chat_lm, prompts[:8], templated)]
    ids = prompt_token_ids(chat_lm.tokenizer, [prompts[0]], templated, 100)[0]
    assert chat_lm.tokenizer.decode(ids) == f"<|user|>\n{prompts[0]}\n<|assistant|>\n"
    assert plain_in_template.texts != generate(chat_lm, prompts[:8], settings).texts


def test_it_refuses_messages_when_the_tokenizer_has_no_chat_template(demo_lm):
    with pytest.raises(SampleError, match="position 1 needs a chat template"):
        generate(demo_lm, ["plain", [{"role": "user", "content": "hi"}]], GenerationSettings(max_new_tokens=4))


def test_it_cuts_answers_before_the_first_stop_string(demo_lm, prompts):
    free = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW))
    stop = most_common_word(free.texts)
    stopped = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW, stop=(stop, "\n\n")))
    assert STOP in stopped.finish
    for before, after, finish in zip(free.texts, stopped.texts, stopped.finish, strict=True):
        assert after == cut_at_stop(before, (stop, "\n\n"))
        assert stop not in after
        if finish == STOP:
            assert len(after) < len(before)
    assert (stopped.tokens <= free.tokens).all() and stopped.tokens.sum() < free.tokens.sum()


def most_common_word(texts: list[str]) -> str:
    words = [word for text in texts for word in text.split() if len(word) > 2]
    return max(set(words), key=words.count)


def test_it_ends_an_answer_at_the_eos_token(demo_lm, prompts):
    free = generate(demo_lm, prompts[:6], GenerationSettings(max_new_tokens=MAX_NEW))
    first_ids = [demo_lm.tokenizer(text, add_special_tokens=False)["input_ids"] for text in free.texts]
    stop_id = first_ids[0][2]
    model = copy.deepcopy(demo_lm.model)
    model.generation_config.eos_token_id = stop_id
    ended = generate(replace(demo_lm, model=model), prompts[:6], GenerationSettings(max_new_tokens=MAX_NEW))
    assert ended.finish[0] == EOS
    assert ended.tokens[0] == 2
    assert ended.texts[0] == demo_lm.tokenizer.decode(first_ids[0][:2])
    assert all(finish in (EOS, LENGTH) for finish in ended.finish)


def test_it_stops_at_max_new_tokens(demo_lm, prompts):
    result = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=3))
    assert result.tokens.max() == 3 and result.forward_passes == 3
    assert result.finish.count(LENGTH) == sum(result.tokens == 3)


def test_it_generates_like_lm_evaluation_harness_generate_until(demo_build, demo_lm, prompts):
    harness = HFLM(pretrained=str(demo_build.base), device="cpu", batch_size=1, dtype=torch.float32)
    stop = ["\n\n", "."]
    requests = [
        Instance("generate_until", {}, (prompt, {"until": stop, "max_gen_toks": MAX_NEW, "do_sample": False}), index)
        for index, prompt in enumerate(prompts)
    ]
    expected = harness.generate_until(requests, disable_tqdm=True)
    assert generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW, stop=tuple(stop))).texts == expected


def test_it_samples_reproducibly_whatever_the_batching(demo_lm, prompts):
    sampled = GenerationSettings(max_new_tokens=MAX_NEW, do_sample=True, seed=3, temperature=0.9, top_p=0.95)
    one = generate(demo_lm, prompts, sampled, token_budget=1)
    together = generate(demo_lm, prompts, sampled, token_budget=100_000)
    other_seed = generate(demo_lm, prompts, replace(sampled, seed=4), token_budget=100_000)
    greedy = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=MAX_NEW))
    assert one.texts == together.texts
    assert other_seed.texts != together.texts
    assert greedy.texts != together.texts


def test_it_reports_progress_per_sample_across_groups(demo_lm, prompts, monkeypatch):
    monkeypatch.setattr(batched, "_GROUP_PROMPTS", 5)
    seen: list[int] = []
    grouped = generate(demo_lm, prompts, GenerationSettings(max_new_tokens=4), token_budget=60, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(prompts)
    assert len(set(seen)) > 3
    monkeypatch.setattr(batched, "_GROUP_PROMPTS", 4096)
    assert grouped.texts == generate(demo_lm, prompts, GenerationSettings(max_new_tokens=4)).texts


def test_its_settings_key_covers_what_changes_an_answer():
    greedy = GenerationSettings()
    assert greedy.sha256() == GenerationSettings(seed=9, temperature=0.5).sha256(), "greedy ignores sampling"
    changed = [
        GenerationSettings(max_new_tokens=65),
        GenerationSettings(stop=("\n",)),
        GenerationSettings(chat_template=True),
        GenerationSettings(do_sample=True),
        GenerationSettings(do_sample=True, seed=1),
    ]
    assert len({greedy.sha256(), *(settings.sha256() for settings in changed)}) == 1 + len(changed)
    assert GenerationSettings(do_sample=True, seed=5).as_dict()["seed"] == 5


def test_it_hashes_the_chat_template(demo_lm, chat_lm):
    assert chat_template_sha256(demo_lm.tokenizer) != chat_template_sha256(chat_lm.tokenizer)
    assert chat_template_sha256(chat_lm.tokenizer) == chat_template_sha256(copy.deepcopy(chat_lm.tokenizer))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_new_tokens": 0}, "at least 1"),
        ({"stop": ("",)}, "non-empty"),
        ({"temperature": 0}, "temperature must be positive"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_it_refuses_invalid_settings(fields, message):
    with pytest.raises(ScoringError, match=message):
        GenerationSettings(**fields)


def test_it_refuses_what_cannot_be_generated(demo_lm, minilm):
    with pytest.raises(ScoringError, match="less than the context length"):
        generate(demo_lm, ["hello"], GenerationSettings(max_new_tokens=demo_lm.max_length))
    with pytest.raises(ScoringError, match="needs a causal LM"):
        generate(minilm, ["hello"])
    with pytest.raises(SampleError, match="position 1 has no tokens"):
        generate(demo_lm, ["hello", ""], GenerationSettings(max_new_tokens=4))
