"""`generate`: the answers to a list of prompts, tokenised per group, cut into pools of token-budget
batches and decoded pool by pool (side by side in single-threaded streams on CPU)."""

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from evals.scoring.batching import ProgressCallback, SampleProgress, map_batches, offset_progress
from evals.scoring.errors import ScoringError
from evals.scoring.generation.drafts import Draft, DraftStats, first_difference
from evals.scoring.generation.pools import PoolRun, cut_pools
from evals.scoring.generation.prompts import Prompt, prompt_token_ids
from evals.scoring.generation.settings import DEFAULT_SETTINGS, EOS, LENGTH, GenerationSettings
from evals.scoring.generation.steps import Batching, Decoder
from evals.scoring.loading import CAUSAL_LM, LoadedModel

# Prompts tokenised and planned at once; bounds host memory for any dataset size.
_GROUP_PROMPTS = 4096
# Padded tokens (rows × (prompt + new tokens)) per batch. Decoding one token per step leaves the
# matrix products small, so generation wants more rows than scoring a text does.
_DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 262144}


@dataclass(frozen=True)
class Generations:
    """Answers in the order of the prompts, with what it took to produce them.

    `tokens` counts the tokens generated for each answer, the EOS token excluded: up to the one
    that completed a stop string, or `max_new_tokens`. `finish` says why each answer ended. For a
    drafted answer, `departs_at_token` is the first answer token that differs from the draft's (None
    when the texts are equal, or without a draft). `prefill_tokens` counts the prompt tokens fed to the
    model: a shared prefix once.
    """

    texts: list[str]
    tokens: np.ndarray
    prompt_tokens: np.ndarray
    finish: list[str]
    forward_passes: int
    seconds: float
    prefill_tokens: int = 0
    departs_at_token: list[int | None] = field(default_factory=list)
    drafting: DraftStats = field(default_factory=DraftStats)

    @property
    def tokens_generated(self) -> int:
        return int(self.tokens.sum())


def default_token_budget(device: torch.device) -> int:
    return _DEFAULT_TOKEN_BUDGET.get(device.type, _DEFAULT_TOKEN_BUDGET["cpu"])


def generate(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    settings: GenerationSettings = DEFAULT_SETTINGS,
    *,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
    drafts: Sequence[Draft | None] | None = None,
    share_prefixes: bool = True,
    refill: bool = True,
) -> Generations:
    """Answers to `prompts` (plain strings or lists of chat messages) by the loaded causal LM.

    `drafts`, aligned with `prompts`, speed up greedy decoding without changing an answer; sampling
    ignores them. `share_prefixes` and `refill` (on by default) change how the work is batched, never
    an answer: off, they give the engine's batching without them, for comparison.
    """
    started = time.perf_counter()
    if lm.kind != CAUSAL_LM:
        raise ScoringError(f"generation needs a causal LM, not a {lm.kind} model")
    max_prompt = lm.max_length - settings.max_new_tokens
    if max_prompt < 1:
        raise ScoringError(
            f"max_new_tokens ({settings.max_new_tokens}) must be less than the context length ({lm.max_length})"
        )
    if drafts is not None and len(drafts) != len(prompts):
        raise ScoringError(f"{len(drafts)} drafts for {len(prompts)} prompts")
    budget = token_budget or default_token_budget(lm.device)
    decoder = Decoder(lm, settings, max_prompt, budget, Batching(share_prefixes, refill))
    results = _Results(len(prompts))
    for first, last in _groups(len(prompts)):
        group_drafts = drafts[first:last] if drafts is not None and not settings.do_sample else None
        _decode_group(decoder, prompts[first:last], results, first, offset_progress(progress, first), group_drafts)
    return Generations(
        texts=results.texts,
        tokens=results.tokens,
        prompt_tokens=results.prompt_tokens,
        finish=results.finish,
        forward_passes=decoder.forward_passes,
        seconds=time.perf_counter() - started,
        prefill_tokens=decoder.prefill_tokens,
        departs_at_token=results.departs_at_token,
        drafting=decoder.drafting,
    )


def _groups(total: int) -> Iterator[tuple[int, int]]:
    for first in range(0, total, _GROUP_PROMPTS):
        yield first, min(total, first + _GROUP_PROMPTS)


class _Results:
    def __init__(self, total: int) -> None:
        self.texts: list[str] = [""] * total
        self.finish: list[str] = [LENGTH] * total
        self.tokens = np.zeros(total, dtype=np.int64)
        self.prompt_tokens = np.zeros(total, dtype=np.int64)
        self.departs_at_token: list[int | None] = [None] * total


def _decode_group(
    decoder: Decoder,
    prompts: Sequence[Prompt],
    results: _Results,
    first: int,
    progress: ProgressCallback | None,
    drafts: Sequence[Draft | None] | None = None,
) -> None:
    """Decode one group of prompts pool by pool into `results` (from index `first` on)."""
    ids = prompt_token_ids(decoder.lm.tokenizer, prompts, decoder.settings, decoder.max_prompt)
    draft_ids = decoder.draft_ids(drafts) if drafts is not None else [None] * len(ids)
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    tracker = SampleProgress(np.ones(len(ids), dtype=np.int64), progress)
    tracker.start()
    # Cut before `map_batches` runs: it sets the thread count, which sizes the pools, to one meanwhile.
    pools = list(cut_pools(decoder, ids, draft_ids, lengths))
    for pool, passes in map_batches(lambda pool: PoolRun(decoder, pool).run(), pools, decoder.lm.device):
        decoder.forward_passes += passes
        decoder.prefill_tokens += pool.prefill_tokens
        decoder.drafting.add(pool.stats)
        for row, answer, finish in zip(pool.rows, pool.answers, pool.finish, strict=True):
            results.texts[first + row] = decoder.answer_text(answer)
            results.tokens[first + row] = len(answer)
            results.finish[first + row] = finish
            if draft_ids[row] is not None and results.texts[first + row] != drafts[row].text:
                ended = answer + [decoder.eos] if finish == EOS else answer
                results.departs_at_token[first + row] = first_difference(ended, draft_ids[row])
        results.prompt_tokens[first + pool.rows] = lengths[pool.rows]
        tracker.finish_parts(pool.rows)
