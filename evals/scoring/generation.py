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

- prompts are tokenised per group, sorted longest first and batched by a token budget over
  rows × (longest prompt + `max_new_tokens`), which bounds the KV cache of a batch;
- a batch is left-padded; padding is masked out and position ids count real tokens only, so each
  row sees exactly the positions it would see alone;
- one forward pass per new token reuses the KV cache, and only the last position goes through
  the output head; a row that is done leaves the batch (its cache rows are dropped), so long
  answers never keep finished ones computing;
- on CPU, batches run side by side in single-threaded streams (`batching.map_batches`).

Sampling draws every row from its own generator, seeded by the recorded seed and the prompt's
tokens, so a sampled answer does not depend on which other prompts shared its batch.
"""

import hashlib
import inspect
import json
import time
from collections.abc import Iterator, Mapping, Sequence
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
)
from evals.scoring.errors import SampleError, ScoringError
from evals.scoring.hashing import prompt_sha256
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
class Generations:
    """Answers in the order of the prompts, with what it took to produce them.

    `tokens` counts the tokens generated for each answer, the EOS token excluded: up to the one
    that completed a stop string, or `max_new_tokens`. `finish` says why each answer ended.
    """

    texts: list[str]
    tokens: np.ndarray
    prompt_tokens: np.ndarray
    finish: list[str]
    forward_passes: int
    seconds: float

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
) -> Generations:
    """Answers to `prompts` (plain strings or lists of chat messages) by the loaded causal LM."""
    started = time.perf_counter()
    if lm.kind != CAUSAL_LM:
        raise ScoringError(f"generation needs a causal LM, not a {lm.kind} model")
    max_prompt = lm.max_length - settings.max_new_tokens
    if max_prompt < 1:
        raise ScoringError(
            f"max_new_tokens ({settings.max_new_tokens}) must be less than the context length ({lm.max_length})"
        )
    decoder = _Decoder(lm, settings, max_prompt, token_budget or default_token_budget(lm.device))
    results = _Results(len(prompts))
    for first, last in _groups(len(prompts)):
        decoder.run_group(prompts[first:last], results, first, offset_progress(progress, first))
    return Generations(
        texts=results.texts,
        tokens=results.tokens,
        prompt_tokens=results.prompt_tokens,
        finish=results.finish,
        forward_passes=decoder.forward_passes,
        seconds=time.perf_counter() - started,
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


@dataclass
class _Batch:
    """Rows of one batch, by their index into the group, with their prompt ids."""

    rows: np.ndarray
    prompts: list[list[int]]
    answers: list[list[int]] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)


class _Decoder:
    """Decodes groups of prompts batch by batch and counts the forward passes it runs."""

    def __init__(self, lm: LoadedModel, settings: GenerationSettings, max_prompt: int, token_budget: int) -> None:
        self.lm = lm
        self.settings = settings
        self.max_prompt = max_prompt
        self.token_budget = token_budget
        self.eos_ids = _eos_ids(lm.model, lm.tokenizer)
        self.pad_id = _pad_id(lm.tokenizer, self.eos_ids)
        self.keeps_last_logits = "logits_to_keep" in inspect.signature(lm.model.forward).parameters
        self.stop_window = 4 * max((len(stop) for stop in settings.stop), default=0) + 2
        self.forward_passes = 0

    def run_group(self, prompts: Sequence[Prompt], results: _Results, first: int, progress: ProgressCallback | None):
        ids = prompt_token_ids(self.lm.tokenizer, prompts, self.settings, self.max_prompt)
        lengths = np.array([len(row) for row in ids], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        padded = lengths[order] + self.settings.max_new_tokens
        batches = (
            _Batch(rows=order[part], prompts=[ids[row] for row in order[part]])
            for part in budget_batches(padded, self.token_budget)
        )
        tracker = SampleProgress(np.ones(len(ids), dtype=np.int64), progress)
        tracker.start()
        for batch, passes in map_batches(self._decode, batches, self.lm.device):
            self.forward_passes += passes
            for row, answer, finish in zip(batch.rows, batch.answers, batch.finish, strict=True):
                results.texts[first + row] = self._answer_text(answer)
                results.tokens[first + row] = len(answer)
                results.finish[first + row] = finish
            results.prompt_tokens[first + batch.rows] = lengths[batch.rows]
            tracker.finish_parts(batch.rows)

    def _decode(self, batch: _Batch) -> int:
        """Fill `batch.answers` and `batch.finish`; returns the forward passes it took."""
        device = self.lm.device
        n_rows = len(batch.prompts)
        width = max(len(ids) for ids in batch.prompts)
        input_ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n_rows, width), dtype=torch.long)
        for row, ids in enumerate(batch.prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        samplers = self._samplers(batch.prompts)
        answers: list[list[int]] = [[] for _ in range(n_rows)]
        finish = [LENGTH] * n_rows
        active = list(range(n_rows))
        cache = DynamicCache()
        passes = 0
        for step in range(self.settings.max_new_tokens):
            logits = self._last_logits(input_ids, mask, positions, cache)
            passes += 1
            chosen = self._choose(logits, [samplers[row] for row in active] if samplers else None)
            still_active = []
            for slot, (row, token) in enumerate(zip(active, chosen, strict=True)):
                if token in self.eos_ids:
                    finish[row] = EOS
                    continue
                answers[row].append(token)
                if self._hit_stop(answers[row]):
                    finish[row] = STOP
                    continue
                still_active.append(slot)
            if not still_active or step + 1 == self.settings.max_new_tokens:
                break
            if len(still_active) < len(active):
                keep = torch.tensor(still_active, device=device)
                cache.batch_select_indices(keep)
                mask, positions = mask[keep], positions[keep]
                chosen = [chosen[slot] for slot in still_active]
                active = [active[slot] for slot in still_active]
            input_ids = torch.tensor(chosen, device=device).unsqueeze(1)
            positions = positions[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        batch.answers, batch.finish = answers, finish
        return passes

    def _last_logits(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        keep = {"logits_to_keep": 1} if self.keeps_last_logits else {}
        output = self.lm.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **keep,
        )
        return output.logits[:, -1, :].float()

    def _choose(self, logits: torch.Tensor, samplers: list[torch.Generator] | None) -> list[int]:
        if samplers is None:
            return logits.argmax(dim=-1).tolist()
        probabilities = _nucleus(torch.softmax(logits / self.settings.temperature, dim=-1), self.settings.top_p)
        return [
            int(torch.multinomial(row, 1, generator=generator))
            for row, generator in zip(probabilities, samplers, strict=True)
        ]

    def _samplers(self, prompts: list[list[int]]) -> list[torch.Generator] | None:
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


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the earliest stop string, as lm-evaluation-harness post-processes answers."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


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
    text: str
    tokens: int
    finish: str


class GenerationStore(Protocol):
    def get_many(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, Generation]:
        """The stored generations among `keys`; absent keys are left out."""
        ...

    def put_many(self, generations: Mapping[GenerationKey, Generation]) -> None: ...


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
) -> CachedGenerations:
    """Answers to `prompts`, generating only those `store` does not hold yet.

    Missing answers are generated `chunk_prompts` at a time and stored after each chunk, so a run
    killed half-way keeps what it finished; the same prompt twice is generated once.
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
        fresh = generate(
            lm,
            [first_prompt[key] for key in chunk],
            settings,
            token_budget=token_budget,
            progress=offset_progress(progress, reused + start),
        )
        answers = {
            key: Generation(text, int(tokens), finish)
            for key, text, tokens, finish in zip(chunk, fresh.texts, fresh.tokens, fresh.finish, strict=True)
        }
        store.put_many(answers)
        known.update(answers)
        passes += fresh.forward_passes
    return CachedGenerations(
        answers=[known[key] for key in keys],
        keys=keys,
        reused=reused,
        generated=len(missing),
        forward_passes=passes,
        seconds=time.perf_counter() - started,
    )
