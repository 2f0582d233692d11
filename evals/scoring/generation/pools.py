"""Pools: consecutive token-budget batches decoded as one batch whose freed rows are refilled with
its waiting prompts (continuous batching), whose shared prompt prefixes are computed once, and whose
rows feed their draft tokens after their last accepted token."""

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from evals.scoring.batching import budget_batches, stream_count
from evals.scoring.generation.drafts import DraftStats, RowDraft
from evals.scoring.generation.settings import EOS, LENGTH
from evals.scoring.generation.steps import Decoder, Taken, greedy
from evals.scoring.kv_rows import LayerStates, Rows, SharedPrefixes, merged

# A prompt prefix of at least this many tokens shared by two or more prompts of a pool is computed
# once; a shorter one costs less to recompute than to copy into every row.
_SHARED_PREFIX_MIN = 32
# A pool is decoded as one batch that takes its waiting prompts as rows finish: it spans up to
# _POOL_BATCHES token-budget batches (more would delay progress reports and the pool's results), and a
# group has _POOLS_PER_STREAM pools per CPU stream where it has that many batches (`map_batches`
# keeps two items per stream in flight, so that no stream waits for another's last pool).
_POOL_BATCHES, _POOLS_PER_STREAM = 8, 2
# A step's draft width: this quantile of the rows' proposals (see `step_width`).
_WIDTH_QUANTILE = 0.5
# A pool stops drafting once, after this many draft tokens, fewer than this share were accepted.
_DRAFT_JUDGED_AFTER, _DRAFT_KEPT_ABOVE = 256, 0.6
# Waiting prompts join once they fill 1/_REFILL_SHARE of the batch's rows: each join costs a pass
# and a copy of the batch's cache, each free row a share of a step.
_REFILL_SHARE = 4


def step_width(proposals: Sequence[int]) -> int:
    """How many draft positions a step feeds each row, given how many each row proposes: the
    `_WIDTH_QUANTILE` of the proposals. A pass costs about rows × (1 + width), so one row proposing
    many tokens must not widen every row; the rows that would feed more are cut to the width."""
    ordered = sorted(proposals)
    return ordered[min(len(ordered) - 1, int(_WIDTH_QUANTILE * len(ordered)))] if ordered else 0


@dataclass
class Pool:
    """Prompts decoded as one batch that takes the waiting ones as rows finish: by their index into the
    group, longest first, with their prompt ids, draft ids and sizes (prompt + `max_new_tokens`); at
    most `slots` rows at a time."""

    rows: np.ndarray
    prompts: list[list[int]]
    drafts: list[list[int] | None]
    sizes: np.ndarray
    slots: int
    answers: list[list[int]] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)
    stats: DraftStats = field(default_factory=DraftStats)
    prefill_tokens: int = 0


def cut_pools(
    decoder: Decoder, ids: list[list[int]], draft_ids: list[list[int] | None], lengths: np.ndarray
) -> Iterator[Pool]:
    """The prompts sorted longest first and cut into token-budget batches, one pool each without
    refilling; else runs of consecutive batches, up to `_POOL_BATCHES` and `_POOLS_PER_STREAM` pools
    per CPU stream where there are that many batches. A pool holds at most as many rows as its
    largest batch."""
    order = np.argsort(-lengths, kind="stable")
    sizes = lengths[order] + decoder.settings.max_new_tokens
    batches = list(budget_batches(sizes, decoder.token_budget))
    per_pool = _POOL_BATCHES if decoder.batching.refill else 1
    streams = _POOLS_PER_STREAM * stream_count(decoder.lm.device)
    count = max(min(streams, len(batches)), -(-len(batches) // per_pool))
    for part in np.array_split(np.arange(len(batches)), count):
        rows = slice(batches[part[0]].start, batches[part[-1]].stop)
        yield Pool(
            rows=order[rows],
            prompts=[ids[row] for row in order[rows]],
            drafts=[draft_ids[row] for row in order[rows]],
            sizes=sizes[rows],
            slots=max(batches[index].stop - batches[index].start for index in part),
        )


def joining(pool: Pool, active: Sequence[int], waiting: deque[int], token_budget: int) -> int:
    """How many waiting prompts join the batch now. Those that fit join: at most `pool.slots` rows,
    and rows × the widest row's size within the token budget (a lone row always fits); they join
    once they fill a share of the slots worth a prefill pass, or are the last, or the batch is empty."""
    if not waiting or len(active) >= pool.slots:
        return 0
    widest = max((int(pool.sizes[row]) for row in active), default=0)
    fitting = 0
    for index in itertools.islice(waiting, pool.slots - len(active)):
        widest = max(widest, int(pool.sizes[index]))
        rows = len(active) + fitting + 1
        if rows > 1 and rows * widest > token_budget:
            break
        fitting += 1
    due = fitting >= max(1, pool.slots // _REFILL_SHARE) or fitting == len(waiting) or not active
    return fitting if due else 0


class PoolRun:
    """One pool decoded: its waiting prompts, their shared prefixes, answers and drafts, and the
    forward passes it took. Each step feeds every row of the batch its last token (a joining row: its
    prompt after the shared prefix) and then its draft tokens, right-padded to the longest draft of
    the step; the fed positions that were not accepted, and the padding, are masked out from then on."""

    def __init__(self, decoder: Decoder, pool: Pool) -> None:
        self.decoder = decoder
        self.pool = pool
        self.device = decoder.lm.device
        self.waiting = deque(range(len(pool.prompts)))
        self.answers: list[list[int]] = [[] for _ in pool.prompts]
        self.finish = [LENGTH] * len(pool.prompts)
        self.drafts = [RowDraft(ids) if ids else None for ids in pool.drafts]
        self.samplers = decoder.samplers(pool.prompts)
        # No prefix is as long as a prompt may be: a prefix leaves each prompt a token of its own.
        minimum = _SHARED_PREFIX_MIN if decoder.batching.share_prefixes else decoder.max_prompt
        self.prefixes = SharedPrefixes(pool.prompts, minimum, self._prefix_states)
        self.passes = 0

    def run(self) -> int:
        """Fill the pool's answers, finish reasons and drafting stats; returns the forward passes."""
        rows: Rows | None = None
        while self.waiting or rows is not None:
            count = self._joining(rows.ids if rows is not None else [], self.waiting)
            if count:
                rows = merged(rows, self._step(self._joined(count)))
            else:
                rows = self._step(rows)
        self.pool.answers, self.pool.finish = self.answers, self.finish
        if any(ids for ids in self.pool.drafts):
            self.pool.stats.answers = sum(1 for ids in self.pool.drafts if ids)
            limit = self.decoder.settings.max_new_tokens
            needs = [
                min(limit, len(answer) + (end == EOS)) for answer, end in zip(self.answers, self.finish, strict=True)
            ]
            self.pool.stats.forward_passes_saved = self._plain_passes(needs) - self.passes
        return self.passes

    def _joining(self, active: Sequence[int], waiting: deque[int]) -> int:
        return joining(self.pool, active, waiting, self.decoder.token_budget)

    def _joined(self, count: int) -> Rows:
        """The next `count` waiting prompts as rows that feed their prompts after the shared prefixes."""
        joining = [self.waiting.popleft() for _ in range(count)]
        prefixes = self.prefixes.cache(joining, self.device)
        suffixes = [self.pool.prompts[row][shared:] for row, shared in zip(joining, prefixes[2], strict=True)]
        self.pool.prefill_tokens += sum(len(suffix) for suffix in suffixes)
        return Rows.start(joining, suffixes, prefixes, self.decoder.pad_id)

    def _prefix_states(self, ids: list[int]) -> LayerStates:
        cache = DynamicCache()
        prefix = torch.tensor([ids], device=self.device)
        positions = torch.arange(len(ids), device=self.device)[None, :]
        self.decoder.step_logits(prefix, torch.ones_like(prefix), positions, cache, 1)
        self.passes += 1
        self.pool.prefill_tokens += len(ids)
        return [(keys, values) for keys, values, *_ in cache]

    def _step(self, rows: Rows) -> Rows | None:
        """One forward pass over the rows; returns those whose answers go on."""
        limit = self.decoder.settings.max_new_tokens
        self._drop_poor_drafts()
        rooms = [(self.drafts[row], limit - len(self.answers[row]) - 1) for row in rows.ids]
        # Every row is fed as many positions as the step's width: a row that would propose more is cut
        # to it, one that would propose fewer fills them with more of its draft rather than with padding.
        width = step_width([len(draft.propose(room)) if draft else 0 for draft, room in rooms])
        proposed = [draft.propose(room, width) if draft else [] for draft, room in rooms]
        tail, tail_mask = self._tail(proposed)
        offsets = torch.arange(tail.shape[1], device=self.device)
        ahead = rows.next_position[:, None]
        tail_positions = torch.minimum(ahead + offsets, ahead + tail_mask.sum(dim=1, keepdim=True))
        logits = self.decoder.step_logits(
            torch.cat([rows.head, tail], dim=1),
            torch.cat([rows.past_mask, rows.head_mask, tail_mask], dim=1),
            torch.cat([rows.head_positions, tail_positions], dim=1),
            rows.cache,
            1 + tail.shape[1],
        )
        self.passes += 1
        accepted, kept = [], []
        for slot, (row, chosen) in enumerate(zip(rows.ids, self._chosen(logits, rows.ids), strict=True)):
            taken = self._take(row, chosen, proposed[slot])
            accepted.append(taken.accepted)
            if taken.finish is None:
                kept.append(slot)
        accepted_tensor = torch.tensor(accepted, device=self.device)
        tail_kept = (offsets[None, :] < accepted_tensor[:, None]).long()
        return rows.advanced(tail_kept, accepted_tensor, kept, [self.answers[rows.ids[slot]][-1] for slot in kept])

    def _drop_poor_drafts(self) -> None:
        """Decode plainly from now on when too few of the pool's draft tokens are accepted: a fed token
        costs about what a generated one does, so poor drafts cost more than the passes they save."""
        stats = self.pool.stats
        if (
            stats.drafted_tokens >= _DRAFT_JUDGED_AFTER
            and stats.accepted_tokens < _DRAFT_KEPT_ABOVE * stats.drafted_tokens
        ):
            self.drafts = [None] * len(self.drafts)

    def _tail(self, proposed: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(tokens) for tokens in proposed)
        tail = torch.full((len(proposed), width), self.decoder.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((len(proposed), width), dtype=torch.long)
        for slot, tokens in enumerate(proposed):
            if tokens:
                tail[slot, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                tail_mask[slot, : len(tokens)] = 1
        return tail.to(self.device), tail_mask.to(self.device)

    def _chosen(self, logits: torch.Tensor, rows: list[int]) -> list[list[int]]:
        if self.samplers is None:
            return greedy(logits).tolist()
        return [[token] for token in self.decoder.choose(logits[:, -1], [self.samplers[row] for row in rows])]

    def _take(self, row: int, chosen: list[int], proposed: list[int]) -> Taken:
        taken = self.decoder.accept(self.answers[row], chosen, proposed)
        self.pool.stats.drafted_tokens += len(proposed)
        self.pool.stats.accepted_tokens += taken.accepted
        if taken.finish is not None:
            self.finish[row] = taken.finish
        elif self.drafts[row]:
            self.drafts[row].update(self.answers[row], len(proposed), taken.accepted)
        return taken

    def _plain_passes(self, needs: list[int]) -> int:
        """The forward passes plain decoding of the pool takes, its answers needing `needs` passes each
        (the joining pass included): the same joins, one token per row and pass."""
        waiting, left = deque(range(len(needs))), {}
        passes = len(self.prefixes.groups)
        while waiting or left:
            count = self._joining(list(left), waiting)
            passes += 1
            if count:
                joined = [waiting.popleft() for _ in range(count)]
                left.update({row: needs[row] - 1 for row in joined if needs[row] > 1})
            else:
                left = {row: steps - 1 for row, steps in left.items() if steps > 1}
        return passes
