"""Shared prompt prefixes: a prefix of 32 tokens or more that two or more prompts of a pool share is
computed once and copied into the rows that extend it, so the prompt pass covers each row's own
suffix; answers stay token for token those of plain greedy decoding and of `model.generate` alone,
whatever the batch size, the stop strings and the EOS token (fp32 on CPU)."""

import pytest

from evals.scoring.generation import EOS, LENGTH, STOP, GenerationSettings, generate, prompt_token_ids
from evals.scoring.kv_rows import prefix_runs
from tests.generation.greedy import forward_passes


def test_it_ends_the_reference_answers_every_way(few_shot_plain, few_shot_alone):
    assert {EOS, STOP, LENGTH} <= set(few_shot_plain.finish)
    assert few_shot_plain.texts == few_shot_alone


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_it_answers_like_plain_greedy_decoding(
    few_shot_lm, few_shot, few_shot_settings, few_shot_plain, few_shot_alone, batch_rows, rows
):
    batch_rows(rows)
    shared = generate(few_shot_lm, few_shot, few_shot_settings)
    assert shared.texts == few_shot_plain.texts == few_shot_alone
    assert shared.tokens.tolist() == few_shot_plain.tokens.tolist()
    assert shared.finish == few_shot_plain.finish
    assert shared.prefill_tokens < few_shot_plain.prefill_tokens == few_shot_plain.prompt_tokens.sum()


def test_it_computes_each_shared_prefix_once(few_shot_lm, few_shot, few_shot_settings, few_shot_plain):
    max_prompt = few_shot_lm.max_length - few_shot_settings.max_new_tokens
    ids = prompt_token_ids(few_shot_lm.tokenizer, few_shot, few_shot_settings, max_prompt)
    tasks = [ids[task::3] for task in (0, 1)]
    prefixes = [common_length(prompts) for prompts in tasks]
    assert min(prefixes) >= 32
    with forward_passes(few_shot_lm) as passes:
        shared = generate(few_shot_lm, few_shot, few_shot_settings, token_budget=100_000, refill=False)
    assert shared.texts == few_shot_plain.texts
    saved = sum((len(prompts) - 1) * prefix for prompts, prefix in zip(tasks, prefixes, strict=True))
    assert shared.prefill_tokens == few_shot_plain.prefill_tokens - saved
    assert sorted(p.tokens for p in passes if p.rows == 1 and p.cached == 0) == sorted(prefixes)
    steps = sum(min(tokens + (end == EOS), 12) - 1 for tokens, end in zip(shared.tokens, shared.finish, strict=True))
    assert sum(p.tokens for p in passes) == shared.prefill_tokens + steps
    assert shared.forward_passes == len(passes) == few_shot_plain.forward_passes + len(tasks)


def common_length(prompts: list[list[int]]) -> int:
    first = prompts[0]
    return min(
        next((k for k, (a, b) in enumerate(zip(first, other, strict=False)) if a != b), len(first))
        for other in prompts[1:]
    )


def test_it_decodes_as_before_without_a_long_shared_prefix(demo_lm, prompts):
    settings = GenerationSettings(max_new_tokens=8)
    default = generate(demo_lm, prompts, settings)
    unshared = generate(demo_lm, prompts, settings, share_prefixes=False)
    assert default.texts == unshared.texts
    assert default.prefill_tokens == unshared.prefill_tokens == default.prompt_tokens.sum()
    assert default.forward_passes == unshared.forward_passes


def test_it_groups_prompts_by_the_prefix_that_saves_most():
    system = list(range(1000, 1010))
    first, second = system + list(range(2000, 2040)), system + list(range(3000, 3040))
    prompts = [first + [1], first + [2, 3], second + [4], second + [5], second + [6], system + [7] * 40, first[:20]]
    groups = prefix_runs(prompts, 32)
    assert sorted((sorted(members), length) for members, length in groups) == [([0, 1], 50), ([2, 3, 4], 50)]
    assert prefix_runs([first, first, first + [9]], 32) == [([0, 1, 2], 49)], "every prompt keeps a token of its own"
    assert prefix_runs([first[:31] + [1], first[:31] + [2]], 32) == [], "31 tokens are not worth sharing"
    assert prefix_runs([first + [1]], 32) == [], "one prompt shares nothing"
