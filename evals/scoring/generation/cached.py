"""The cached front door: answers keyed by what they depend on, generated only when the store lacks
them, drafted from the answers a run's `Drafting` looks up, with a share of the drafted ones audited."""

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from evals.scoring.batching import ProgressCallback, offset_progress
from evals.scoring.errors import ScoringError
from evals.scoring.generation.batched import Generations, generate
from evals.scoring.generation.drafts import Draft, DraftStats
from evals.scoring.generation.prompts import Prompt, chat_template_sha256
from evals.scoring.generation.settings import DEFAULT_SETTINGS, GenerationSettings
from evals.scoring.hashing import prompt_sha256
from evals.scoring.loading import LoadedModel, ModelFacts

ENGINE_VERSION = 1
# One drafted answer in this many is also decoded plainly and compared (DRIFTBOARD_DRAFT_AUDIT).
DEFAULT_AUDIT_EVERY = 50
# Missing answers are generated and stored this many prompts at a time (see `generate_cached`).
DEFAULT_CHUNK_PROMPTS = 256


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


def generation_keys(
    lm: LoadedModel, prompts: Sequence[Prompt], settings: GenerationSettings, engine_version: int = ENGINE_VERSION
) -> list[GenerationKey]:
    config, template = generation_config_sha256(lm, settings), chat_template_sha256(lm)
    return [
        GenerationKey(lm.weights_sha256, prompt_sha256(prompt), config, template, engine_version) for prompt in prompts
    ]


class GenerationBackend(Protocol):
    """What answers the prompts `generate_cached` lacks: this process's engine (`LOCAL_ENGINE`) unless
    another is given. A served engine (an OpenAI-compatible completions endpoint such as vLLM's, with
    per-request drafts where it takes them) would be another backend. A backend returns `Generations`
    aligned with the prompts under `settings` (greedy answers equal to plain greedy decoding) and may
    use the drafts or ignore them; its `engine_version` is part of every answer's key, so the answers of
    two engines are never taken for each other."""

    engine_version: int

    def __call__(
        self,
        lm: LoadedModel,
        prompts: Sequence[Prompt],
        settings: GenerationSettings,
        *,
        token_budget: int | None = None,
        progress: ProgressCallback | None = None,
        drafts: Sequence[Draft | None] | None = None,
    ) -> Generations: ...


class LocalEngine:
    """The engine of this package (`generate`), in this process, on the model's device."""

    engine_version = ENGINE_VERSION

    def __call__(
        self,
        lm: LoadedModel,
        prompts: Sequence[Prompt],
        settings: GenerationSettings,
        *,
        token_budget: int | None = None,
        progress: ProgressCallback | None = None,
        drafts: Sequence[Draft | None] | None = None,
    ) -> Generations:
        return generate(lm, prompts, settings, token_budget=token_budget, progress=progress, drafts=drafts)


LOCAL_ENGINE = LocalEngine()


def generate_cached(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    store: GenerationStore,
    settings: GenerationSettings = DEFAULT_SETTINGS,
    *,
    token_budget: int | None = None,
    chunk_prompts: int = DEFAULT_CHUNK_PROMPTS,
    progress: ProgressCallback | None = None,
    drafting: Drafting | None = None,
    backend: GenerationBackend = LOCAL_ENGINE,
) -> CachedGenerations:
    """Answers to `prompts`, generating only those `store` does not hold yet (by `backend`).

    Missing answers are generated `chunk_prompts` at a time and stored after each chunk, so a run
    killed half-way keeps what it finished; the same prompt twice is generated once. With `drafting`,
    greedy answers are drafted from the answers it looks up, and its audit share is decoded plainly
    as well: where the two differ, the plain answer is stored and the mismatch counted.
    """
    started = time.perf_counter()
    keys = generation_keys(lm, prompts, settings, backend.engine_version)
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
            lm, chunk, first_prompt, settings, token_budget, chunk_progress, drafting, backend
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
    backend: GenerationBackend,
) -> tuple[dict[GenerationKey, Generation], int]:
    """Generate one chunk's answers. Drafted answers in the audit share are also decoded plainly, as
    extra rows of the same call (they ride along with the drafted rows instead of costing a decoding
    of their own); where the two differ, the plain answer is kept and the mismatch counted."""
    found = drafting.lookup(chunk) if drafting is not None and not settings.do_sample else {}
    audited = [key for key in chunk if key in found and drafting.audits(key)]
    prompts = [first_prompt[key] for key in [*chunk, *audited]]
    drafts = [found.get(key) for key in chunk] + [None] * len(audited) if found else None
    shown = None if progress is None else (lambda done: progress(min(done, len(chunk))))
    fresh = backend(lm, prompts, settings, token_budget=token_budget, progress=shown, drafts=drafts)
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
    if found:
        drafting.stats.add(fresh.drafting)
        _audit(answers, audited, fresh, len(chunk), drafting)
    return answers, fresh.forward_passes


def _audit(
    answers: dict[GenerationKey, Generation],
    audited: list[GenerationKey],
    fresh: Generations,
    offset: int,
    drafting: Drafting,
) -> None:
    """Compare each audited drafted answer with its plain decoding (row `offset + i` of `fresh`); a
    differing answer is replaced by the plain one."""
    for index, key in enumerate(audited, start=offset):
        drafted = answers[key]
        drafting.stats.audited_answers += 1
        drafting.stats.audited_tokens += int(fresh.tokens[index])
        expected = (fresh.texts[index], int(fresh.tokens[index]), fresh.finish[index])
        if (drafted.text, drafted.tokens, drafted.finish) != expected:
            drafting.stats.audit_mismatches += 1
            answers[key] = Generation(*expected)
