"""The rows of a decoding batch with their KV cache, and prompt prefixes shared by several rows.

Tensor work for the generation engine (`evals.scoring.generation`). Every row of a batch ends at
the cache's last column; the columns before a row's first token, padding and rejected draft tokens
are masked out of its attention. So two batches merge by left-padding the narrower cache with
masked columns, and the columns no row uses any more are cut off as they merge: a batch that takes
new prompts as others finish keeps a cache as wide as its widest row, not as its history.

A prefix shared by several prompts is computed once, for one row, and its keys and values are
copied into each row that extends it, right-aligned before the row's own suffix; the columns between
the prefix and the suffix, where the row's suffix is shorter than the longest, are masked out.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

# Keys and values of every layer, (rows, heads, columns, head size) each.
LayerStates = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Rows:
    """Rows of a batch being decoded (`ids`: the caller's numbers for them) and their KV cache: per row
    the attention mask over the cached columns, the tokens fed next (`head`, left-padded: a prompt's
    own tokens at first, then the last accepted token) with their mask and positions, and the position
    after them."""

    ids: list[int]
    cache: DynamicCache
    past_mask: torch.Tensor
    head: torch.Tensor
    head_mask: torch.Tensor
    head_positions: torch.Tensor
    next_position: torch.Tensor

    @classmethod
    def start(
        cls,
        ids: list[int],
        suffixes: list[list[int]],
        prefixes: tuple[DynamicCache, torch.Tensor, list[int]],
        pad_id: int,
    ) -> "Rows":
        """Rows that feed their prompts' `suffixes` next, after their `prefixes` (`SharedPrefixes.cache`):
        a cache of the prompts' shared prefixes (empty when none), its mask and each row's prefix length."""
        cache, past_mask, shared = prefixes
        width = max(len(suffix) for suffix in suffixes)
        head = torch.full((len(ids), width), pad_id, dtype=torch.long)
        head_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            head[row, width - len(suffix) :] = torch.tensor(suffix)
            head_mask[row, width - len(suffix) :] = 1
        head, head_mask = head.to(past_mask.device), head_mask.to(past_mask.device)
        offsets = torch.tensor(shared, device=past_mask.device)
        head_positions = offsets[:, None] + (head_mask.cumsum(dim=1) - 1).clamp(min=0)
        return cls(ids, cache, past_mask, head, head_mask, head_positions, offsets + head_mask.sum(dim=1))

    def advanced(
        self, tail_kept: torch.Tensor, accepted: torch.Tensor, kept: list[int], last: list[int]
    ) -> "Rows | None":
        """The rows after a step that fed the head and a tail of draft tokens (`tail_kept` masks those
        accepted: `accepted` per row), keeping the slots in `kept`, each fed its `last` token next."""
        if not kept:
            return None
        past_mask = torch.cat([self.past_mask, self.head_mask, tail_kept], dim=1)
        next_position = self.next_position + accepted + 1
        if len(kept) < len(self.ids):
            index = torch.tensor(kept, device=past_mask.device)
            self.cache.batch_select_indices(index)
            past_mask, next_position = past_mask[index], next_position[index]
        head = torch.tensor([[token] for token in last], device=past_mask.device)
        ids = [self.ids[slot] for slot in kept]
        return Rows(ids, self.cache, past_mask, head, torch.ones_like(head), next_position[:, None] - 1, next_position)


def merged(first: Rows | None, second: Rows | None) -> Rows | None:
    """One batch of the rows of both, each fed one token next; the columns no row uses are cut off."""
    if first is None or second is None:
        return second if first is None else first
    leads = _unused_columns(first.past_mask), _unused_columns(second.past_mask)
    width = max(first.past_mask.shape[1] - leads[0], second.past_mask.shape[1] - leads[1])
    layers = [
        (_joined(keys, other_keys, leads, width, -2), _joined(values, other_values, leads, width, -2))
        for (keys, values, *_), (other_keys, other_values, *_) in zip(first.cache, second.cache, strict=True)
    ]
    return Rows(
        ids=first.ids + second.ids,
        cache=DynamicCache(ddp_cache_data=layers),
        past_mask=_joined(first.past_mask, second.past_mask, leads, width, -1),
        head=torch.cat([first.head, second.head]),
        head_mask=torch.cat([first.head_mask, second.head_mask]),
        head_positions=torch.cat([first.head_positions, second.head_positions]),
        next_position=torch.cat([first.next_position, second.next_position]),
    )


def _unused_columns(past_mask: torch.Tensor) -> int:
    used = past_mask.any(dim=0).nonzero()
    return int(used[0]) if len(used) else past_mask.shape[1]


def _joined(first: torch.Tensor, second: torch.Tensor, leads: tuple[int, int], width: int, dim: int) -> torch.Tensor:
    return torch.cat([_right_aligned(first, leads[0], width, dim), _right_aligned(second, leads[1], width, dim)])


def _right_aligned(states: torch.Tensor, lead: int, width: int, dim: int) -> torch.Tensor:
    """`states` without its first `lead` columns along `dim`, left-padded with zeros to `width` columns."""
    kept = states.narrow(dim, lead, states.shape[dim] - lead)
    padding = list(kept.shape)
    padding[dim] = width - kept.shape[dim]
    return torch.cat([kept.new_zeros(padding), kept], dim=dim)


def prefix_runs(prompts: Sequence[Sequence[int]], minimum: int) -> list[tuple[list[int], int]]:
    """Groups of two or more prompts sharing a prefix of at least `minimum` tokens, with the prefix's
    length: a prefix leaves every prompt at least one token of its own.

    Prompts sorted by their tokens are taken in turn; a group takes the next prompt while the tokens
    it saves ((members - 1) × prefix) do not shrink, so few-shot prompts of two tasks under one system
    prompt form two groups, each sharing its examples, rather than one sharing the system prompt.
    """
    order = sorted(range(len(prompts)), key=lambda index: list(prompts[index]))
    groups: list[tuple[list[int], int]] = []
    members, length = order[:1], 0
    for previous, index in zip(order, order[1:], strict=False):
        first, second = prompts[previous], prompts[index]
        common = min(_common_length(first, second), len(first) - 1, len(second) - 1)
        shared = common if len(members) == 1 else min(length, common)
        if common >= minimum and len(members) * shared >= (len(members) - 1) * length:
            members, length = members + [index], shared
            continue
        groups.append((members, length))
        members, length = [index], 0
    groups.append((members, length))
    return [(members, length) for members, length in groups if len(members) > 1]


def _common_length(first: Sequence[int], second: Sequence[int]) -> int:
    return next(
        (index for index, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), min(len(first), len(second))
    )


class SharedPrefixes:
    """The prefixes that prompts share (see `prefix_runs`), each computed once by `compute` (prefix
    token ids → keys and values of one row) when the first prompt that extends it joins the batch,
    and let go when the last has."""

    def __init__(
        self, prompts: Sequence[Sequence[int]], minimum: int, compute: Callable[[list[int]], LayerStates]
    ) -> None:
        self.prompts = prompts
        self.compute = compute
        self.group = [-1] * len(prompts)
        self.lengths = [0] * len(prompts)
        self.groups = prefix_runs(prompts, minimum)
        self.waiting = [len(members) for members, _ in self.groups]
        self.states: dict[int, LayerStates] = {}
        for number, (members, length) in enumerate(self.groups):
            for index in members:
                self.group[index], self.lengths[index] = number, length

    def cache(self, indices: list[int], device: torch.device) -> tuple[DynamicCache, torch.Tensor, list[int]]:
        """The prompts' prefixes right-aligned in one cache (rows without one masked out), its mask and
        each prompt's prefix length: what `Rows.start` continues from."""
        shared = [self.lengths[index] for index in indices]
        width = max(shared)
        mask = torch.zeros((len(indices), width), dtype=torch.long, device=device)
        if width == 0:
            return DynamicCache(), mask, shared
        for row, length in enumerate(shared):
            mask[row, width - length :] = 1
        rows = [self._states(index) for index in indices]
        model = next(states for states in rows if states is not None)
        layers = [
            tuple(torch.cat([_padded_row(states, layer, part, width, model) for states in rows]) for part in range(2))
            for layer in range(len(model))
        ]
        return DynamicCache(ddp_cache_data=layers), mask, shared

    def _states(self, index: int) -> LayerStates | None:
        number = self.group[index]
        if number < 0:
            return None
        if number not in self.states:
            self.states[number] = self.compute(list(self.prompts[index][: self.lengths[index]]))
        states = self.states[number]
        self.waiting[number] -= 1
        if self.waiting[number] == 0:
            del self.states[number]
        return states


def _padded_row(states: LayerStates | None, layer: int, part: int, width: int, model: LayerStates) -> torch.Tensor:
    if states is None:
        shape = list(model[layer][part].shape)
        shape[-2] = width
        return model[layer][part].new_zeros(shape)
    return _right_aligned(states[layer][part], 0, width, -2)
