"""Causal-LM scorer: summed negative log-likelihood of every token of every sample.

The definition is lm-evaluation-harness's `loglikelihood_rolling` (see `windows.py`); the
computation is organised for throughput instead of following the harness's loop:

- texts are tokenised in one batch call per group of samples, and all rolling windows of the group
  are planned ahead and sorted by length, longest first;
- a forward pass takes as many windows as fit in a token budget (rows × padded length), so short
  windows travel together and padding stays small;
- the model's trunk gives hidden states, and only the positions that are scored go through the
  output head, in chunks, with log-sum-exp in fp32: the [batch, length, vocabulary] logits and a
  full log-softmax never exist;
- on CPU, batches run side by side in single-threaded streams (`batching.map_batches`), and
  GPT-2's Python-level GELU is swapped for torch's fused one at load time;
- groups are bounded in size and nothing per-window outlives its batch, so memory stays flat
  whatever the dataset size.
"""

import itertools
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evals.scoring import metrics
from evals.scoring.batching import (
    ProgressCallback,
    SampleProgress,
    budget_batches,
    default_token_budget,
    map_batches,
    offset_progress,
)
from evals.scoring.errors import ScoringError, VocabularyMismatchError
from evals.scoring.loading import CAUSAL_LM, LoadedModel
from evals.scoring.windows import rolling_windows

# Characters of text tokenised and planned at once; bounds host memory for any dataset size.
_GROUP_CHARS = 8_000_000
# Logit elements materialised at once when scoring positions (64 MiB in fp32).
_LOGIT_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class CausalScores:
    nll: np.ndarray
    tokens: np.ndarray
    bytes: np.ndarray
    forward_passes: int
    tokens_scored: int
    seconds: float

    @property
    def bits_per_byte(self) -> float:
        return metrics.bits_per_byte(self.nll, self.bytes)

    @property
    def perplexity(self) -> float:
        return metrics.perplexity(self.nll, self.tokens)


@dataclass(frozen=True)
class _WindowPlan:
    """Windows of a group of samples, longest first; `start` indexes the group's flat ids."""

    sample: np.ndarray
    start: np.ndarray
    length: np.ndarray
    scored: np.ndarray


def score_causal(
    lm: LoadedModel,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
) -> CausalScores:
    """Per-sample NLL (nats, float64), token and UTF-8 byte counts of `texts` under `lm`."""
    started = time.perf_counter()
    if lm.kind != CAUSAL_LM:
        raise ScoringError(f"bits per byte needs a causal language model, not a {lm.kind} model")
    run = _CausalRun(
        lm,
        context=min(lm.max_length, max_length or lm.max_length),
        token_budget=token_budget or lm.token_budget or default_token_budget(lm.device),
    )
    nll = np.zeros(len(texts), dtype=np.float64)
    tokens = np.zeros(len(texts), dtype=np.int64)
    for first, last in _groups(texts):
        nll[first:last], tokens[first:last] = run.score_group(texts[first:last], offset_progress(progress, first))
    return CausalScores(
        nll=nll,
        tokens=tokens,
        bytes=np.fromiter((len(text.encode("utf-8")) for text in texts), np.int64, len(texts)),
        forward_passes=run.forward_passes,
        tokens_scored=int(tokens.sum()),
        seconds=time.perf_counter() - started,
    )


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that predicts a text's first token: BOS, else EOS, as the harness does."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise ScoringError("the tokenizer has neither a BOS nor an EOS token to start texts with")


def _groups(texts: Sequence[str]) -> Iterator[tuple[int, int]]:
    first, chars = 0, 0
    for index, text in enumerate(texts):
        chars += len(text)
        if chars >= _GROUP_CHARS:
            yield first, index + 1
            first, chars = index + 1, 0
    if first < len(texts):
        yield first, len(texts)


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], prefix: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples as one flat id array, each sample preceded by the prefix token.

    Special tokens are not added: only the text's own tokens are predicted. Texts longer than the
    context are split into windows later, so the tokenizer's warning about them is silenced.
    """
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)
    token_lists = encoded["input_ids"]
    lengths = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
    offsets = np.concatenate(([0], np.cumsum(lengths + 1)[:-1])).astype(np.int64)
    ids = np.empty(int(lengths.sum()) + len(token_lists), dtype=np.int64)
    is_text = np.ones(len(ids), dtype=bool)
    is_text[offsets] = False
    ids[offsets] = prefix
    ids[is_text] = np.fromiter(itertools.chain.from_iterable(token_lists), np.int64)
    return ids, offsets, lengths


def _check_ids_in_embedding(ids: np.ndarray, lm: LoadedModel) -> None:
    """Refuse only a token id the texts actually produce that the weights have no row for."""
    if lm.embedding_rows is None or not len(ids) or ids.max() < lm.embedding_rows:
        return
    token_id = int(ids[ids >= lm.embedding_rows][0])
    raise VocabularyMismatchError(
        f"the texts produce token {lm.tokenizer.convert_ids_to_tokens(token_id)!r} (id {token_id}) but the "
        f"weights only have {lm.embedding_rows} embedding rows: the tokenizer does not belong to these weights"
    )


def _plan_windows(offsets: np.ndarray, lengths: np.ndarray, context: int) -> _WindowPlan:
    rows = [
        (sample, int(offset) + window.start, window.length, window.scored)
        for sample, (offset, length) in enumerate(zip(offsets, lengths, strict=True))
        for window in rolling_windows(int(length), context)
    ]
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    table = table[np.argsort(-table[:, 2], kind="stable")]
    return _WindowPlan(*table.T)


@dataclass(frozen=True)
class _BatchInputs:
    input_ids: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    targets: np.ndarray
    samples: np.ndarray


def _batch_inputs(ids: np.ndarray, plan: _WindowPlan, batch: slice, pad: int) -> _BatchInputs:
    """Right-padded input ids, and for each scored position its row, column, target and sample.

    Windows are right-padded, so under causal attention the padding comes after every real
    position and cannot change their outputs; scored positions never read a padded output.
    """
    starts, lengths, scored = plan.start[batch], plan.length[batch], plan.scored[batch]
    input_ids = np.full((len(lengths), int(lengths[0])), pad, dtype=np.int64)
    rows, columns = _positions(lengths, np.zeros_like(lengths))
    input_ids[rows, columns] = ids[starts[rows] + columns]
    scored_rows, scored_columns = _positions(scored, lengths - scored)
    return _BatchInputs(
        input_ids=input_ids,
        rows=scored_rows,
        columns=scored_columns,
        targets=ids[starts[scored_rows] + scored_columns + 1],
        samples=plan.sample[batch][scored_rows],
    )


def _positions(counts: np.ndarray, first_column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of `counts[r]` consecutive columns from `first_column[r]` in each row r."""
    rows = np.repeat(np.arange(len(counts)), counts)
    row_starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns = np.arange(int(counts.sum())) - row_starts + first_column[rows]
    return rows, columns


class _CausalRun:
    """Scores groups of texts window by window and counts the forward passes it runs."""

    def __init__(self, lm: LoadedModel, *, context: int, token_budget: int) -> None:
        self.lm = lm
        self.context = context
        self.token_budget = token_budget
        self.prefix = prefix_token_id(lm.tokenizer)
        self.head = lm.model.get_output_embeddings()
        self.from_hidden_states = _head_reproduces_logits(lm.model)
        self.forward_passes = 0

    def score_group(self, texts: Sequence[str], progress: ProgressCallback | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample NLL and token counts of a group small enough to plan in memory."""
        ids, offsets, lengths = _tokenize(self.lm.tokenizer, texts, self.prefix)
        _check_ids_in_embedding(ids, self.lm)
        plan = _plan_windows(offsets, lengths, self.context)
        tracker = SampleProgress(np.bincount(plan.sample, minlength=len(texts)), progress)
        tracker.start()
        nll = np.zeros(len(texts), dtype=np.float64)

        def token_nll(batch: slice) -> tuple[np.ndarray, np.ndarray]:
            inputs = _batch_inputs(ids, plan, batch, pad=self.prefix)
            return inputs.samples, self._token_nll(inputs)

        batches = budget_batches(plan.length, self.token_budget)
        for batch, (samples, values) in map_batches(token_nll, batches, self.lm.device):
            nll += np.bincount(samples, weights=values, minlength=len(texts))
            self.forward_passes += 1
            tracker.finish_parts(plan.sample[batch])
        return nll, lengths

    def _token_nll(self, batch: _BatchInputs) -> np.ndarray:
        device = self.lm.device
        input_ids = torch.from_numpy(batch.input_ids).to(device)
        rows = torch.from_numpy(batch.rows).to(device)
        columns = torch.from_numpy(batch.columns).to(device)
        targets = torch.from_numpy(batch.targets).to(device)
        model = self.lm.model
        if self.from_hidden_states:
            hidden = model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
            token_nll = _chunked_nll(hidden[rows, columns], targets, self.head)
        else:
            logits = model(input_ids=input_ids, use_cache=False).logits
            token_nll = _chunked_nll(logits[rows, columns], targets, _identity)
        return token_nll.double().cpu().numpy()


def _chunked_nll(
    features: torch.Tensor, targets: torch.Tensor, to_logits: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """-log softmax(logits)[target] per position, with at most a chunk of logits in fp32."""
    token_nll = torch.empty(len(targets), dtype=torch.float32, device=features.device)
    vocabulary = to_logits(features[:1]).shape[-1]
    chunk = max(1, _LOGIT_CHUNK_ELEMENTS // vocabulary)
    for start in range(0, len(targets), chunk):
        logits = to_logits(features[start : start + chunk]).float()
        target_logits = logits.gather(1, targets[start : start + chunk, None]).squeeze(1)
        token_nll[start : start + chunk] = torch.logsumexp(logits, dim=-1) - target_logits
    return token_nll


def _identity(logits: torch.Tensor) -> torch.Tensor:
    return logits


_HEAD_CHECKS: "weakref.WeakKeyDictionary[PreTrainedModel, bool]" = weakref.WeakKeyDictionary()


def _head_reproduces_logits(model: PreTrainedModel) -> bool:
    """Whether output head ∘ trunk gives the model's logits.

    It does for GPT-2, Llama and most decoders; a few architectures scale or soft-cap their
    logits after the head, and those are scored from the full forward pass instead.
    """
    if model not in _HEAD_CHECKS:
        _HEAD_CHECKS[model] = _compare_head_with_forward(model)
    return _HEAD_CHECKS[model]


def _compare_head_with_forward(model: PreTrainedModel) -> bool:
    head = model.get_output_embeddings()
    if head is None:
        return False
    probe = torch.arange(8, device=model.device)[None, :] % model.config.get_text_config().vocab_size
    with torch.inference_mode():
        logits = model(input_ids=probe, use_cache=False).logits
        hidden = model.base_model(input_ids=probe, use_cache=False).last_hidden_state
        return torch.allclose(head(hidden).float(), logits.float(), rtol=1e-3, atol=1e-3)
