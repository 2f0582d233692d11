"""Refilled rows (continuous batching): a row that finishes hands its place in the batch to the next
waiting prompt instead of the batch shrinking to its slowest row; answers stay token for token those
of plain greedy decoding and of `model.generate` alone, drafted or not, whatever the batch size, the
stop strings and the EOS token (fp32 on CPU)."""

import math

import pytest
import torch

from evals.scoring.generation import EOS, LENGTH, Draft, generate
from evals.scoring.generation import pools as pooling
from tests.generation.greedy import forward_passes


@pytest.fixture
def one_pool(monkeypatch):
    """Every prompt of a group waits for a row of one batch."""
    monkeypatch.setattr(pooling, "_POOLS_PER_STREAM", 0)
    monkeypatch.setattr(pooling, "_POOL_BATCHES", 1_000_000)


@pytest.fixture(scope="module")
def few_shot_drafts(few_shot_plain) -> list[Draft]:
    """Drafts that depart from the answers at different tokens (or never), so rows finish at different steps."""
    drafts = []
    for index, (text, finish) in enumerate(zip(few_shot_plain.texts, few_shot_plain.finish, strict=True)):
        cut = len(text) * (index % 4) // 4
        drafts.append(Draft(text, finish) if index % 4 == 0 else Draft(text[:cut] + " zebra zebra zebra", LENGTH))
    return drafts


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_it_refills_freed_rows_with_the_answers_of_plain_greedy_decoding(
    few_shot_lm,
    few_shot,
    few_shot_settings,
    few_shot_plain,
    few_shot_alone,
    few_shot_drafts,
    batch_rows,
    one_pool,
    rows,
):
    batch_rows(rows)
    refilled = generate(few_shot_lm, few_shot, few_shot_settings)
    drafted = generate(few_shot_lm, few_shot, few_shot_settings, drafts=few_shot_drafts)
    for result in (refilled, drafted):
        assert result.texts == few_shot_plain.texts == few_shot_alone
        assert result.tokens.tolist() == few_shot_plain.tokens.tolist()
        assert result.finish == few_shot_plain.finish
    assert drafted.drafting.accepted_tokens > 0
    assert drafted.drafting.forward_passes_saved == refilled.forward_passes - drafted.forward_passes


def test_it_keeps_the_batch_full_while_prompts_wait(few_shot_lm, few_shot, few_shot_settings, batch_rows, one_pool):
    batch_rows(7)
    with forward_passes(few_shot_lm) as passes:
        refilled = generate(few_shot_lm, few_shot, few_shot_settings, share_prefixes=False)
    joins = [index for index, step in enumerate(passes) if step.cached == 0]
    steps_while_waiting = [step.rows for step in passes[: joins[-1]] if step.cached > 0]
    assert len(joins) > 10 and len(steps_while_waiting) > 20
    assert set(steps_while_waiting) == {7}, "a freed row takes a waiting prompt before the next step"
    shrinking = generate(few_shot_lm, few_shot, few_shot_settings, share_prefixes=False, refill=False)
    assert refilled.texts == shrinking.texts
    row_steps = sum(tokens + (end == EOS) - 1 for tokens, end in zip(refilled.tokens, refilled.finish, strict=True))
    full = math.ceil(row_steps / 7)
    assert full <= len(passes) - len(joins) < full + refilled.tokens.max(), "only the last rows run below 7"
    assert len(passes) == refilled.forward_passes < shrinking.forward_passes


@pytest.mark.parametrize("threads", [1, 2])
def test_it_cuts_a_group_into_two_pools_per_cpu_stream(
    few_shot_lm, few_shot, few_shot_settings, few_shot_plain, batch_rows, monkeypatch, threads
):
    batch_rows(7)
    pools: list[int] = []
    run = pooling.PoolRun.run
    monkeypatch.setattr(pooling.PoolRun, "run", lambda self: pools.append(len(self.pool.prompts)) or run(self))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        refilled = generate(few_shot_lm, few_shot, few_shot_settings)
    finally:
        torch.set_num_threads(before)
    assert refilled.texts == few_shot_plain.texts
    assert len(pools) == 2 * threads and sum(pools) == len(few_shot)
