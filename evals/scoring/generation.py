"""Generation engine: the answers a causal LM gives to prompts, greedy unless sampling is asked for.

The answers are those of lm-evaluation-harness's `generate_until` on the same model:

- a plain prompt is tokenised without special tokens and left-truncated to the context minus
  `max_new_tokens`; chat `messages` (and plain prompts when `chat_template` is set) go through the
  tokenizer's chat template with the generation prompt, then are tokenised the same way (the
  template writes its own special tokens);
- the answer is the decoded continuation (special tokens skipped), cut before the first stop
  string; decoding ends at an EOS token, a stop string or `max_new_tokens`.

The computation is organised for throughput, and every sample's tokens stay those of decoding it
alone (fp32 on CPU):

- prompts are tokenised per group, sorted longest first and cut into token-budget batches of
  rows × (longest prompt + `max_new_tokens`), which bounds the KV cache of a batch;
- a batch is left-padded; padding is masked out and position ids count real tokens only, so each
  row sees exactly the positions it would see alone;
- one forward pass per new token reuses the KV cache, and only the last position goes through
  the output head;
- freed rows are refilled (continuous batching): consecutive batches form a pool (up to
  `_POOL_BATCHES`), decoded as one batch. A row that is done (EOS, stop string, `max_new_tokens`)
  leaves it, and the pool's next waiting prompts join once they fill a quarter of its rows, as long
  as rows × (the widest row's prompt + `max_new_tokens`) stays within the budget; so the batch does
  not shrink to its slowest row. Joining prompts run their prompt pass together, then their cache
  rows are merged into the batch's (`kv_rows.merged`: left-padded, columns no row uses cut off);
- a prefix of at least `_SHARED_PREFIX_MIN` tokens shared by two or more prompts of a pool (few-shot
  examples, a system prompt, a chat template's preamble) is computed once and its keys and values
  are copied into each row that extends it, so the prompt pass covers each row's own suffix, its
  positions counting on after the prefix (`kv_rows.SharedPrefixes`);
- on CPU, pools run side by side in single-threaded streams (`batching.map_batches`): a group is cut
  into at least two pools per stream where it has that many batches.

Greedy answers may be drafted: given, per prompt, an answer believed to be right (the stored
answer of the baseline's weights), a row feeds its next draft tokens after its last accepted token
and the model's own greedy choice at every fed position decides. The agreeing prefix plus the
model's own token where it first disagrees are accepted in one forward pass; the rejected positions
stay in the KV cache but are masked out of the attention for good, so rows that accepted different
numbers of tokens share a batch. After a disagreement a row finds its place in the draft again by
looking up its last tokens there. Drafting changes how many forward passes an answer takes, never
the answer: EOS, stop strings and `max_new_tokens` apply token by token as in plain decoding.
Drafting composes with shared prefixes and refilling: a joining row drafts from its first pass, and
a row whose draft departed early no longer holds the batch back, its place being refilled.

Sampling draws every row from its own generator, seeded by the recorded seed and the prompt's
tokens, so a sampled answer does not depend on which other prompts shared its batch.
"""

import hashlib
import inspect
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from evals.scoring.batching import (
    ProgressCallback,
    SampleProgress,
    budget_batches,
    map_batches,
    offset_progress,
    stream_count,
)
from evals.scoring.errors import SampleError, ScoringError
from evals.scoring.hashing import prompt_sha256
from evals.scoring.kv_rows import LayerStates, Rows, SharedPrefixes, merged
from evals.scoring.loading import CAUSAL_LM, LoadedModel, ModelFacts, tokenizer_chat_template_sha256

ENGINE_VERSION = 1
EOS, STOP, LENGTH = "eos", "stop", "length"

Messages = list[dict[str, str]]
Prompt = str | Messages

# Prompts tokenised and planned at once; bounds host memory for any dataset size.
_GROUP_PROMPTS = 4096
# Padded tokens (rows × (prompt + new tokens)) per batch. Decoding one token per step leaves the
# matrix products small, so generation wants more rows than scoring a text does.
_DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 262144}
# A prompt prefix of at least this many tokens shared by two or more prompts of a pool is computed
# once; a shorter one costs less to recompute than to copy into every row.
_SHARED_PREFIX_MIN = 32
# A pool is decoded as one batch that takes its waiting prompts as rows finish: it spans up to
# _POOL_BATCHES token-budget batches (more would delay progress reports and the pool's results), and a
# group has _POOLS_PER_STREAM pools per CPU stream where it has that many batches (`map_batches`
# keeps two items per stream in flight, so that no stream waits for another's last pool).
_POOL_BATCHES, _POOLS_PER_STREAM = 8, 2
# Waiting prompts join once they fill 1/_REFILL_SHARE of the batch's rows: each join costs a pass
# and a copy of the batch's cache, each free row a share of a step.
_REFILL_SHARE = 4
# Draft tokens a row feeds per forward pass: it starts with _DRAFT_START, doubles while the whole
# draft is accepted (up to the cap: a longer feed costs more than it is likely to save) and drops
# to what was accepted after a disagreement.
_DRAFT_START, _DRAFT_CAP = 4, 16
# How many of an answer's last tokens are looked up in the draft to find the row's place again.
_REALIGN_NGRAMS = (3, 2)
# One drafted answer in this many is also decoded plainly and compared (DRIFTBOARD_DRAFT_AUDIT).
DEFAULT_AUDIT_EVERY = 50
# Missing answers are generated and stored this many prompts at a time (see `generate_cached`).
DEFAULT_CHUNK_PROMPTS = 256


# Upper bounds of a family's generation settings: what one answer may cost, and the stop strings
# checked after every generated token.
MAX_NEW_TOKENS_LIMIT = 8192
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 200
GENERATION_SETTING_KEYS = ("max_new_tokens", "stop", "chat_template", "do_sample", "seed", "temperature", "top_p")
_SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "max_new_tokens": int,
    "chat_template": bool,
    "do_sample": bool,
    "seed": int,
    "temperature": (int, float),
    "top_p": (int, float),
}
_SETTING_WORDS = {
    "max_new_tokens": "a whole number",
    "chat_template": "true or false",
    "do_sample": "true or false",
    "seed": "a whole number",
    "temperature": "a number",
    "top_p": "a number",
}


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated; part of every generation's cache key and of the fingerprint."""

    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    chat_template: bool = False
    do_sample: bool = False
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ScoringError(
                f"max_new_tokens must be at least 1 and at most {MAX_NEW_TOKENS_LIMIT}, not {self.max_new_tokens}"
            )
        if any(not isinstance(stop, str) or not stop for stop in self.stop):
            raise ScoringError("stop strings must be non-empty strings")
        if len(self.stop) > MAX_STOP_STRINGS or any(len(stop) > MAX_STOP_CHARS for stop in self.stop):
            raise ScoringError(f"stop: at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_CHARS} characters each")
        if self.temperature <= 0:
            raise ScoringError(f"temperature must be positive, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ScoringError(f"top_p must be in (0, 1], not {self.top_p}")

    @classmethod
    def from_dict(cls, settings: Mapping[str, object]) -> "GenerationSettings":
        """Settings from JSON (a family's), refusing unknown keys and values of the wrong type."""
        unknown = sorted(set(settings) - set(GENERATION_SETTING_KEYS))
        if unknown:
            raise ScoringError(f"unknown generation setting(s) {unknown}; known: {', '.join(GENERATION_SETTING_KEYS)}")
        values = dict(settings)
        for name, kinds in _SETTING_TYPES.items():
            value = values.get(name)
            # JSON true is a Python int too: a flag must be a bool and a number must not be one.
            if name in values and (isinstance(value, bool) != (kinds is bool) or not isinstance(value, kinds)):
                raise ScoringError(f"generation setting `{name}` must be {_SETTING_WORDS[name]}, not {values[name]!r}")
        if "stop" in values:
            if not isinstance(values["stop"], list | tuple):
                raise ScoringError("generation setting `stop` must be a list of strings")
            values["stop"] = tuple(values["stop"])
        return cls(**values)

    def as_dict(self) -> dict:
        """The settings that change an answer: sampling parameters only when sampling."""
        settings = asdict(self)
        settings["stop"] = list(self.stop)
        if not self.do_sample:
            for name in ("seed", "temperature", "top_p"):
                del settings[name]
        return settings

    def sha256(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Draft:
    """An answer believed to be the model's (another weights' stored answer), and whose weights gave it.

    Its text is tokenised by the model's own tokenizer, so a draft made with another tokenizer serves
    as well; an answer that ended at EOS drafts the EOS token too.
    """

    text: str
    finish: str
    source: str = ""


@dataclass
class DraftStats:
    """What drafting did: draft tokens fed and accepted, answers also decoded plainly (the audit) and
    how many of those differed, and the forward passes plain decoding of the same batches would have
    taken beyond those run."""

    answers: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    audited_answers: int = 0
    audited_tokens: int = 0
    audit_mismatches: int = 0
    forward_passes_saved: int = 0

    def add(self, other: "DraftStats") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


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


def chat_template_sha256(lm: "LoadedModel | ModelFacts | PreTrainedTokenizerBase") -> str:
    """Hash of the chat template of a model's tokenizer (of the empty string when it has none)."""
    if isinstance(lm, ModelFacts):
        return lm.chat_template_sha256
    return tokenizer_chat_template_sha256(lm.tokenizer if isinstance(lm, LoadedModel) else lm)


def default_token_budget(device: torch.device) -> int:
    return _DEFAULT_TOKEN_BUDGET.get(device.type, _DEFAULT_TOKEN_BUDGET["cpu"])


def generate(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    settings: GenerationSettings = GenerationSettings(),
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
    decoder = _Decoder(lm, settings, max_prompt, budget, _Batching(share_prefixes, refill))
    results = _Results(len(prompts))
    for first, last in _groups(len(prompts)):
        group_drafts = drafts[first:last] if drafts is not None and not settings.do_sample else None
        decoder.run_group(prompts[first:last], results, first, offset_progress(progress, first), group_drafts)
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


def prompt_token_ids(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], settings: GenerationSettings, max_prompt: int
) -> list[list[int]]:
    """Token ids of each prompt as the model reads it, left-truncated to `max_prompt` tokens."""
    texts = [_prompt_text(tokenizer, prompt, settings, position) for position, prompt in enumerate(prompts)]
    # Prompts longer than the context are left-truncated below: the tokenizer need not warn.
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    for position, ids in enumerate(encoded):
        if not ids:
            raise SampleError(f"the prompt at position {position} has no tokens")
    return [ids[-max_prompt:] for ids in encoded]


def _prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, settings: GenerationSettings, position: int
) -> str:
    if isinstance(prompt, str) and not settings.chat_template:
        return prompt
    if not tokenizer.chat_template:
        raise SampleError(f"the prompt at position {position} needs a chat template, and the tokenizer has none")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


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


class _Batching(NamedTuple):
    """How the engine batches its work (both on unless a comparison turns one off)."""

    share_prefixes: bool = True
    refill: bool = True


@dataclass
class _Pool:
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


class _RowDraft:
    """One row's draft and where the row stands in it: the index of the next draft token (None once
    the row lost its place) and how many tokens to feed next."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.next: int | None = 0
        self.size = _DRAFT_START
        self.misses = 0

    def propose(self, room: int) -> list[int]:
        if self.next is None or room <= 0:
            return []
        return self.ids[self.next : self.next + min(self.size, room)]

    def update(self, answer: list[int], fed: int, accepted: int) -> None:
        """After a step that fed `fed` draft tokens, of which the first `accepted` agreed."""
        if self.next is None:
            self.next = _realign(self.ids, answer, len(answer))
            self.size = 2
            return
        own = self.next + accepted  # the draft index of the model's own token this step
        if own < len(self.ids) and self.ids[own] == answer[-1]:
            self.next, self.misses = own + 1, 0
            self.size = min(_DRAFT_CAP, 2 * self.size) if accepted == fed else self.size
            return
        self.size = max(1, accepted)
        self.misses = 0 if accepted else self.misses + 1
        found = _realign(self.ids, answer, own + 1)
        # No match: guess the model replaced one token, once; after that wait for a match.
        self.next = found if found is not None else (own + 1 if self.misses <= 1 else None)


def _realign(ids: list[int], answer: list[int], near: int) -> int | None:
    """The draft index after the answer's last few tokens found in the draft (nearest to `near`)."""
    for n in _REALIGN_NGRAMS:
        if len(answer) < n:
            continue
        tail = answer[-n:]
        ends = [start + n for start in range(len(ids) - n + 1) if ids[start : start + n] == tail]
        if ends:
            return min(ends, key=lambda end: abs(end - near))
    return None


class _Decoder:
    """Decodes groups of prompts pool by pool and counts the forward passes and prompt tokens it runs."""

    def __init__(
        self, lm: LoadedModel, settings: GenerationSettings, max_prompt: int, token_budget: int, batching: _Batching
    ) -> None:
        self.lm = lm
        self.settings = settings
        self.max_prompt = max_prompt
        self.token_budget = token_budget
        self.batching = batching
        self.eos_ids = _eos_ids(lm.model, lm.tokenizer)
        self.pad_id = _pad_id(lm.tokenizer, self.eos_ids)
        self.keeps_last_logits = "logits_to_keep" in inspect.signature(lm.model.forward).parameters
        self.stop_window = 4 * max((len(stop) for stop in settings.stop), default=0) + 2
        self.forward_passes = 0
        self.prefill_tokens = 0
        self.drafting = DraftStats()

    def run_group(
        self,
        prompts: Sequence[Prompt],
        results: _Results,
        first: int,
        progress: ProgressCallback | None,
        drafts: Sequence[Draft | None] | None = None,
    ):
        ids = prompt_token_ids(self.lm.tokenizer, prompts, self.settings, self.max_prompt)
        draft_ids = self._draft_ids(drafts) if drafts is not None else [None] * len(ids)
        lengths = np.array([len(row) for row in ids], dtype=np.int64)
        tracker = SampleProgress(np.ones(len(ids), dtype=np.int64), progress)
        tracker.start()
        # Cut before `map_batches` runs: it sets the thread count, which sizes the pools, to one meanwhile.
        pools = list(self._pools(ids, draft_ids, lengths))
        for pool, passes in map_batches(lambda pool: _PoolRun(self, pool).run(), pools, self.lm.device):
            self.forward_passes += passes
            self.prefill_tokens += pool.prefill_tokens
            self.drafting.add(pool.stats)
            for row, answer, finish in zip(pool.rows, pool.answers, pool.finish, strict=True):
                results.texts[first + row] = self._answer_text(answer)
                results.tokens[first + row] = len(answer)
                results.finish[first + row] = finish
                if draft_ids[row] is not None and results.texts[first + row] != drafts[row].text:
                    ended = answer + [self._eos] if finish == EOS else answer
                    results.departs_at_token[first + row] = _first_difference(ended, draft_ids[row])
            results.prompt_tokens[first + pool.rows] = lengths[pool.rows]
            tracker.finish_parts(pool.rows)

    def _pools(self, ids: list[list[int]], draft_ids: list[list[int] | None], lengths: np.ndarray) -> Iterator[_Pool]:
        """The prompts sorted longest first and cut into token-budget batches, one pool each without
        refilling; else runs of consecutive batches, up to `_POOL_BATCHES` and `_POOLS_PER_STREAM` pools
        per CPU stream where there are that many batches. A pool holds at most as many rows as its
        largest batch."""
        order = np.argsort(-lengths, kind="stable")
        sizes = lengths[order] + self.settings.max_new_tokens
        batches = list(budget_batches(sizes, self.token_budget))
        per_pool = _POOL_BATCHES if self.batching.refill else 1
        streams = _POOLS_PER_STREAM * stream_count(self.lm.device)
        count = max(min(streams, len(batches)), -(-len(batches) // per_pool))
        for part in np.array_split(np.arange(len(batches)), count):
            rows = slice(batches[part[0]].start, batches[part[-1]].stop)
            yield _Pool(
                rows=order[rows],
                prompts=[ids[row] for row in order[rows]],
                drafts=[draft_ids[row] for row in order[rows]],
                sizes=sizes[rows],
                slots=max(batches[index].stop - batches[index].start for index in part),
            )

    def joining(self, pool: _Pool, active: Sequence[int], waiting: deque[int]) -> int:
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
            if rows > 1 and rows * widest > self.token_budget:
                break
            fitting += 1
        due = fitting >= max(1, pool.slots // _REFILL_SHARE) or fitting == len(waiting) or not active
        return fitting if due else 0

    @property
    def _eos(self) -> int:
        eos = self.lm.tokenizer.eos_token_id
        return eos if eos in self.eos_ids else min(self.eos_ids)

    def _draft_ids(self, drafts: Sequence[Draft | None]) -> list[list[int] | None]:
        texts = [draft.text if draft is not None else "" for draft in drafts]
        encoded = self.lm.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
        ids: list[list[int] | None] = []
        for draft, tokens in zip(drafts, encoded["input_ids"], strict=True):
            ended = tokens + [self._eos] if draft is not None and draft.finish == EOS and self.eos_ids else tokens
            ids.append(ended[: self.settings.max_new_tokens] if draft is not None and ended else None)
        return ids

    def accept(self, answer: list[int], chosen: list[int], proposed: list[int]) -> "_Taken":
        """Append the model's tokens of one step to `answer`: its choice after the last token and after
        every draft token that agreed with its choice before; ends the answer as plain decoding would."""
        for index, token in enumerate(chosen[: len(proposed) + 1]):
            if token in self.eos_ids:
                return _Taken(index, EOS)
            answer.append(token)
            if self._hit_stop(answer):
                return _Taken(index, STOP)
            if len(answer) == self.settings.max_new_tokens:
                return _Taken(index, LENGTH)
            if index == len(proposed) or proposed[index] != token:
                return _Taken(index, None)
        raise AssertionError("a step ends at the model's first own token")

    def step_logits(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, keep: int
    ) -> torch.Tensor:
        """Logits of the last `keep` fed positions (only those go through the output head)."""
        kept = {"logits_to_keep": keep} if self.keeps_last_logits else {}
        output = self.lm.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **kept,
        )
        return output.logits[:, -keep:, :].float()

    def choose(self, logits: torch.Tensor, samplers: list[torch.Generator] | None) -> list[int]:
        if samplers is None:
            return logits.argmax(dim=-1).tolist()
        probabilities = _nucleus(torch.softmax(logits / self.settings.temperature, dim=-1), self.settings.top_p)
        return [
            int(torch.multinomial(row, 1, generator=generator))
            for row, generator in zip(probabilities, samplers, strict=True)
        ]

    def samplers(self, prompts: list[list[int]]) -> list[torch.Generator] | None:
        if not self.settings.do_sample:
            return None
        generators = []
        for ids in prompts:
            digest = hashlib.sha256(json.dumps([self.settings.seed, ids]).encode()).digest()
            generator = torch.Generator(device=self.lm.device)
            generator.manual_seed(int.from_bytes(digest[:8], "little"))
            generators.append(generator)
        return generators

    def _hit_stop(self, answer: list[int]) -> bool:
        if not self.settings.stop:
            return False
        tail = self.lm.tokenizer.decode(answer[-self.stop_window :], skip_special_tokens=True)
        return any(stop in tail for stop in self.settings.stop)

    def _answer_text(self, answer: list[int]) -> str:
        return cut_at_stop(self.lm.tokenizer.decode(answer, skip_special_tokens=True), self.settings.stop)


class _PoolRun:
    """One pool decoded: its waiting prompts, their shared prefixes, answers and drafts, and the
    forward passes it took. Each step feeds every row of the batch its last token (a joining row: its
    prompt after the shared prefix) and then its draft tokens, right-padded to the longest draft of
    the step; the fed positions that were not accepted, and the padding, are masked out from then on."""

    def __init__(self, decoder: _Decoder, pool: _Pool) -> None:
        self.decoder = decoder
        self.pool = pool
        self.device = decoder.lm.device
        self.waiting = deque(range(len(pool.prompts)))
        self.answers: list[list[int]] = [[] for _ in pool.prompts]
        self.finish = [LENGTH] * len(pool.prompts)
        self.drafts = [_RowDraft(ids) if ids else None for ids in pool.drafts]
        self.samplers = decoder.samplers(pool.prompts)
        # No prefix is as long as a prompt may be: a prefix leaves each prompt a token of its own.
        minimum = _SHARED_PREFIX_MIN if decoder.batching.share_prefixes else decoder.max_prompt
        self.prefixes = SharedPrefixes(pool.prompts, minimum, self._prefix_states)
        self.passes = 0

    def run(self) -> int:
        """Fill the pool's answers, finish reasons and drafting stats; returns the forward passes."""
        rows: Rows | None = None
        while self.waiting or rows is not None:
            joining = self.decoder.joining(self.pool, rows.ids if rows is not None else [], self.waiting)
            if joining:
                rows = merged(rows, self._step(self._joined(joining)))
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
        proposed = [
            self.drafts[row].propose(limit - len(self.answers[row]) - 1) if self.drafts[row] else [] for row in rows.ids
        ]
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

    def _tail(self, proposed: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(tokens) for tokens in proposed)
        tail = torch.full((len(proposed), width), self.decoder.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((len(proposed), width), dtype=torch.long)
        for slot, tokens in enumerate(proposed):
            tail[slot, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            tail_mask[slot, : len(tokens)] = 1
        return tail.to(self.device), tail_mask.to(self.device)

    def _chosen(self, logits: torch.Tensor, rows: list[int]) -> list[list[int]]:
        if self.samplers is None:
            return logits.argmax(dim=-1).tolist()
        return [[token] for token in self.decoder.choose(logits[:, -1], [self.samplers[row] for row in rows])]

    def _take(self, row: int, chosen: list[int], proposed: list[int]) -> "_Taken":
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
            joining = self.decoder.joining(self.pool, list(left), waiting)
            passes += 1
            if joining:
                joined = [waiting.popleft() for _ in range(joining)]
                left.update({row: needs[row] - 1 for row in joined if needs[row] > 1})
            else:
                left = {row: steps - 1 for row, steps in left.items() if steps > 1}
        return passes


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the earliest stop string, as lm-evaluation-harness post-processes answers."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


class _Taken(NamedTuple):
    """What one step gave a row: how many draft tokens agreed, and why the answer ended (None: it goes on)."""

    accepted: int
    finish: str | None


def _first_difference(answer: list[int], draft: list[int]) -> int:
    return next(
        (index for index, (a, b) in enumerate(zip(answer, draft, strict=False)) if a != b), min(len(answer), len(draft))
    )


def _nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches `top_p` (the top one always)."""
    if top_p >= 1:
        return probabilities
    ordered, indices = probabilities.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered >= top_p
    ordered[outside] = 0
    return torch.zeros_like(probabilities).scatter(-1, indices, ordered)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        configured = [configured]
    ids = set(configured or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def _pad_id(tokenizer: PreTrainedTokenizerBase, eos_ids: frozenset[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return min(eos_ids) if eos_ids else 0


def messages_of(sample: Mapping) -> Prompt:
    """What a golden sample asks the model: its chat `messages`, else its `prompt`."""
    messages = sample.get("messages")
    if messages:
        return messages
    prompt = sample.get("prompt")
    if not prompt:
        raise SampleError(f"sample {sample.get('id')!r} has no prompt to generate from")
    return prompt


class GenerationKey(NamedTuple):
    """What an answer depends on: the weights, the prompt, how it was generated and by which engine.

    `config_sha256` covers the generation settings plus what else changes the tokens: the tokenizer,
    the context length (prompts are left-truncated to it) and the dtype.
    """

    weights_sha256: str
    prompt_sha256: str
    config_sha256: str
    chat_template_sha256: str
    engine_version: int


@dataclass(frozen=True)
class Generation:
    """A stored answer. A drafted one also says whose answer drafted it and at which token it departs
    from that draft (None when their texts are equal): information about the answer, not part of its key."""

    text: str
    tokens: int
    finish: str
    drafted_from: str = ""
    departs_at_token: int | None = None


class GenerationStore(Protocol):
    def get_many(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, Generation]:
        """The stored generations among `keys`; absent keys are left out."""
        ...

    def put_many(self, generations: Mapping[GenerationKey, Generation]) -> None: ...


@dataclass
class Drafting:
    """Where the drafts of a run's answers come from (`lookup`: the keys of the answers to generate →
    drafts), one in `audit_every` drafted answers also decoded plainly (0: none), and what drafting
    did over the run."""

    lookup: Callable[[Sequence[GenerationKey]], Mapping[GenerationKey, Draft]]
    audit_every: int = DEFAULT_AUDIT_EVERY
    stats: DraftStats = field(default_factory=DraftStats)

    def audits(self, key: GenerationKey) -> bool:
        """Whether an answer is in the audit share: chosen by its prompt, so a rerun audits the same ones."""
        return self.audit_every > 0 and int(key.prompt_sha256[:12], 16) % self.audit_every == 0


class InMemoryGenerationStore:
    def __init__(self) -> None:
        self.generations: dict[GenerationKey, Generation] = {}

    def get_many(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, Generation]:
        return {key: self.generations[key] for key in keys if key in self.generations}

    def put_many(self, generations: Mapping[GenerationKey, Generation]) -> None:
        self.generations.update(generations)


@dataclass(frozen=True)
class CachedGenerations:
    """Answers in prompt order, with how many came from the store and how many were generated."""

    answers: list[Generation]
    keys: list[GenerationKey]
    reused: int
    generated: int
    forward_passes: int
    seconds: float

    @property
    def texts(self) -> list[str]:
        return [answer.text for answer in self.answers]

    @property
    def tokens(self) -> np.ndarray:
        return np.array([answer.tokens for answer in self.answers], dtype=np.int64)


def generation_config_sha256(lm: LoadedModel, settings: GenerationSettings) -> str:
    facts = {
        "settings": settings.as_dict(),
        "tokenizer": lm.tokenizer_hash,
        "max_length": lm.max_length,
        "dtype": str(lm.dtype).removeprefix("torch."),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def generation_keys(lm: LoadedModel, prompts: Sequence[Prompt], settings: GenerationSettings) -> list[GenerationKey]:
    config, template = generation_config_sha256(lm, settings), chat_template_sha256(lm)
    return [
        GenerationKey(lm.weights_sha256, prompt_sha256(prompt), config, template, ENGINE_VERSION) for prompt in prompts
    ]


def generate_cached(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    store: GenerationStore,
    settings: GenerationSettings = GenerationSettings(),
    *,
    token_budget: int | None = None,
    chunk_prompts: int = DEFAULT_CHUNK_PROMPTS,
    progress: ProgressCallback | None = None,
    drafting: Drafting | None = None,
) -> CachedGenerations:
    """Answers to `prompts`, generating only those `store` does not hold yet.

    Missing answers are generated `chunk_prompts` at a time and stored after each chunk, so a run
    killed half-way keeps what it finished; the same prompt twice is generated once. With `drafting`,
    greedy answers are drafted from the answers it looks up, and its audit share is decoded plainly
    as well: where the two differ, the plain answer is stored and the mismatch counted.
    """
    started = time.perf_counter()
    keys = generation_keys(lm, prompts, settings)
    known = store.get_many(list(dict.fromkeys(keys)))
    missing = list(dict.fromkeys(key for key in keys if key not in known))
    first_prompt = {key: prompts[index] for index, key in reversed(list(enumerate(keys)))}
    reused = sum(key in known for key in keys)
    if missing and isinstance(lm, ModelFacts):
        raise ScoringError(
            f"{len(missing)} of {len(keys)} answers were never generated for these weights and settings; "
            "they are generated by the scoring run, which comes first"
        )
    if progress is not None:
        progress(reused)
    passes = 0
    for start in range(0, len(missing), max(1, chunk_prompts)):
        chunk = missing[start : start + chunk_prompts]
        chunk_progress = offset_progress(progress, reused + start)
        answers, chunk_passes = _generate_chunk(
            lm, chunk, first_prompt, settings, token_budget, chunk_progress, drafting
        )
        store.put_many(answers)
        known.update(answers)
        passes += chunk_passes
    return CachedGenerations(
        answers=[known[key] for key in keys],
        keys=keys,
        reused=reused,
        generated=len(missing),
        forward_passes=passes,
        seconds=time.perf_counter() - started,
    )


def _generate_chunk(
    lm: LoadedModel,
    chunk: list[GenerationKey],
    first_prompt: Mapping[GenerationKey, Prompt],
    settings: GenerationSettings,
    token_budget: int | None,
    progress: ProgressCallback | None,
    drafting: Drafting | None,
) -> tuple[dict[GenerationKey, Generation], int]:
    found = drafting.lookup(chunk) if drafting is not None and not settings.do_sample else {}
    drafts = [found.get(key) for key in chunk] if found else None
    prompts = [first_prompt[key] for key in chunk]
    fresh = generate(lm, prompts, settings, token_budget=token_budget, progress=progress, drafts=drafts)
    answers = {}
    for index, key in enumerate(chunk):
        draft = found.get(key)
        answers[key] = Generation(
            fresh.texts[index],
            int(fresh.tokens[index]),
            fresh.finish[index],
            drafted_from=draft.source if draft is not None else "",
            departs_at_token=fresh.departs_at_token[index] if draft is not None else None,
        )
    if not found:
        return answers, fresh.forward_passes
    drafting.stats.add(fresh.drafting)
    return answers, fresh.forward_passes + _audit(lm, answers, first_prompt, settings, token_budget, drafting)


def _audit(
    lm: LoadedModel,
    answers: dict[GenerationKey, Generation],
    first_prompt: Mapping[GenerationKey, Prompt],
    settings: GenerationSettings,
    token_budget: int | None,
    drafting: Drafting,
) -> int:
    """Decode the audit share of the drafted answers plainly; a differing answer is replaced by the
    plain one. Returns the forward passes it took."""
    audited = [key for key, answer in answers.items() if answer.drafted_from and drafting.audits(key)]
    if not audited:
        return 0
    plain = generate(lm, [first_prompt[key] for key in audited], settings, token_budget=token_budget)
    for index, key in enumerate(audited):
        drafted = answers[key]
        drafting.stats.audited_answers += 1
        drafting.stats.audited_tokens += int(plain.tokens[index])
        expected = (plain.texts[index], int(plain.tokens[index]), plain.finish[index])
        if (drafted.text, drafted.tokens, drafted.finish) != expected:
            drafting.stats.audit_mismatches += 1
            answers[key] = Generation(*expected)
    return plain.forward_passes
