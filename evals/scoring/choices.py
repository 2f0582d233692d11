"""Log-likelihoods of a question's choices given its context, as lm-evaluation-harness's
`multiple_choice` output type computes them (`HFLM.loglikelihood` on `(context, delimiter + choice)`).

The tokenisation is the harness's `_encode_pair`: whitespace at the end of the context moves to the
front of the continuation, the context and the whole text are encoded (with the tokenizer's own
special tokens, unless the text already starts with the BOS text), and the continuation is the
whole text's tokens past the context's. When context and continuation together exceed the window,
the harness keeps their last `max_length + 1` tokens; so do we.

The computation differs only in how it is organised: the choices of a question share their context
tokens, so the context runs once, its key/value cache is repeated for every choice, and the
choices' tokens run as one batch on it. A question whose longest choice needs truncation runs each
choice in full instead, as the harness does.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from evals.scoring.causal import prefix_token_id
from evals.scoring.errors import ScoringError
from evals.scoring.loading import LoadedModel


@dataclass(frozen=True)
class ChoiceScores:
    """Summed log-likelihood (nats) of each choice, the forward passes and the tokens spent on them."""

    loglikelihoods: np.ndarray
    forward_passes: int
    tokens: int


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The harness's `tok_encode`: the tokenizer's special tokens, unless `text` starts with the BOS text."""
    bos_text = tokenizer.decode(prefix_token_id(tokenizer))
    return tokenizer.encode(text, add_special_tokens=not text.startswith(bos_text))


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens, split as the harness's `_encode_pair` splits them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def choice_loglikelihoods(
    lm: LoadedModel, context: str, continuations: Sequence[str], *, max_length: int | None = None
) -> ChoiceScores:
    """The log-likelihood of each continuation after `context` (the delimiter is part of each continuation)."""
    window = min(lm.max_length, max_length or lm.max_length)
    pairs = [encode_pair(lm.tokenizer, context, continuation) for continuation in continuations]
    context_ids = pairs[0][0]
    tails = [tail for _, tail in pairs]
    if not context_ids or any(not tail or len(tail) > window for tail in tails):
        raise ScoringError(
            f"a choice of the question starting {context[:40]!r} has no tokens after its context, "
            f"or more than the {window}-token window"
        )
    tokens = len(context_ids) + sum(map(len, tails))
    with torch.inference_mode():
        if len(context_ids) + max(map(len, tails)) <= window + 1:
            passes = 1 if max(map(len, tails)) == 1 else 2
            return ChoiceScores(_shared_context(lm, context_ids, tails), passes, tokens)
        return ChoiceScores(_each_in_full(lm, context_ids, tails, window), 1, tokens)


def _shared_context(lm: LoadedModel, context_ids: list[int], tails: list[list[int]]) -> np.ndarray:
    """One pass over the context; its last logits give every choice's first token, and its cache,
    repeated per choice, carries one batched pass over the choices' other tokens."""
    model = lm.model
    prefix = model(torch.tensor([context_ids], device=lm.device), use_cache=True)
    first = torch.log_softmax(prefix.logits[0, -1].float(), dim=-1)
    totals = np.array([float(first[tail[0]]) for tail in tails], dtype=np.float64)
    rest = [tail[1:] for tail in tails]
    longest = max(map(len, rest))
    if not longest:
        return totals
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(len(tails))
    # Right padding: a causal model's real positions never see the padding that follows them.
    ids = torch.tensor([tail[:-1] + [tail[-1]] * (longest + 1 - len(tail)) for tail in tails], device=lm.device)
    logits = torch.log_softmax(model(ids, past_key_values=cache, use_cache=True).logits.float(), dim=-1)
    for row, tail in enumerate(rest):
        if tail:
            picked = logits[row, torch.arange(len(tail)), torch.tensor(tail, device=lm.device)]
            totals[row] += float(picked.double().sum())
    return totals


def _each_in_full(lm: LoadedModel, context_ids: list[int], tails: list[list[int]], window: int) -> np.ndarray:
    """Every choice in its own row: context and choice keep their last `window + 1` tokens."""
    rows = [(context_ids + tail)[-(window + 1) :][:-1] for tail in tails]
    longest = max(map(len, rows))
    ids = torch.tensor([row + [row[-1]] * (longest - len(row)) for row in rows], device=lm.device)
    logits = torch.log_softmax(lm.model(ids).logits.float(), dim=-1)
    totals = np.zeros(len(tails), dtype=np.float64)
    for index, (row, tail) in enumerate(zip(rows, tails, strict=True)):
        positions = torch.arange(len(row) - len(tail), len(row))
        picked = logits[index, positions, torch.tensor(tail, device=lm.device)]
        totals[index] = float(picked.double().sum())
    return totals
