"""Scorers of generated answers: the model answers each sample's prompt (or chat messages) and the
answer is checked against the sample's reference.

Three plug-ins share one generation per (weights, prompt, settings, chat template, engine): the
first to run generates through `generate_cached`, the others find the answers in the same
`GenerationStore`. Which settings, embedder, regex and store they use comes from `configured()`
(a family's settings); unconfigured, they use greedy decoding of 64 new tokens, the embedder
folder in $DRIFTBOARD_EMBEDDER and a bounded in-process store.

- `answer-checks`: `exact_match` and `contains_reference` (0/1, after `answers.normalize_answer`)
  and `answer_length` (tokens generated);
- `answer-similarity`: `answer_similarity`, the cosine of the answer's and the reference's
  embeddings by the embedder;
- `answer-regex`: `regex_match`, 1 when the family's regular expression finds a match.

A conversation (a sample with `turns`) is answered turn by turn and scored per turn (see
`conversations`); the family's `turns` setting says how its turns' values make the sample's.
"""

import inspect
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Self

from evals.scoring import answers, conversations
from evals.scoring.batching import ProgressCallback
from evals.scoring.embedding import EMBEDDING_CACHE, EmbeddingStore
from evals.scoring.errors import ScoringError
from evals.scoring.generation import (
    ENGINE_VERSION,
    GENERATION_SETTING_KEYS,
    Drafting,
    Generation,
    GenerationKey,
    GenerationSettings,
    GenerationStore,
    chat_template_sha256,
    generate_cached,
    generation_config_sha256,
    messages_of,
)
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, MODEL_CACHE, LoadedModel
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers.base import Needs, Option, Sample, Scorer, ScorerOutput, register, register_scorer

EMBEDDER_ENV = "DRIFTBOARD_EMBEDDER"
# Answers kept by the default in-process store: enough for a run's scorers to share one generation.
_LOCAL_STORE_ANSWERS = 100_000


class BoundedGenerationStore:
    """An in-process LRU of answers (the default store when a caller passes none)."""

    def __init__(self, capacity: int = _LOCAL_STORE_ANSWERS) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[GenerationKey, Generation] = OrderedDict()

    def get_many(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, Generation]:
        found = {}
        for key in keys:
            if key in self._answers:
                self._answers.move_to_end(key)
                found[key] = self._answers[key]
        return found

    def put_many(self, generations: Mapping[GenerationKey, Generation]) -> None:
        self._answers.update(generations)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


LOCAL_STORE = BoundedGenerationStore()


@dataclass(frozen=True)
class AnswerOptions:
    """A family's generation settings: how to generate, what to embed with, which regex to check."""

    generation: GenerationSettings = GenerationSettings()
    embedder: str | None = None
    regex: str | None = None
    # How a conversation's per-turn values make its value (`conversations.TURN_AGGREGATES`).
    turns: str = "mean"
    store: GenerationStore = field(default=LOCAL_STORE, compare=False)
    # Where a run's greedy answers are drafted from (see `generate_cached`); a speed-up only.
    drafting: Drafting | None = field(default=None, compare=False)
    # Where embeddings of answers and references are kept (the process's cache unless a store is given).
    embeddings: EmbeddingStore = field(default=EMBEDDING_CACHE, compare=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, object] | None, **extra: object) -> "AnswerOptions":
        """Options from a family's `generation` settings (`{"max_new_tokens": 32, "stop": ["\\n"],
        "chat_template": true, "embedder": "/models/minilm", "regex": "^yes", "turns": "min"}`); a
        clear `ScoringError` for an unknown key or a bad value."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(GENERATION_SETTING_KEYS) - {"embedder", "regex", "turns"})
        if unknown:
            known = ", ".join([*GENERATION_SETTING_KEYS, "embedder", "regex", "turns"])
            raise ScoringError(f"unknown generation setting(s) {unknown}; known: {known}")
        turns = settings.pop("turns", "mean")
        if turns not in conversations.TURN_AGGREGATES:
            raise ScoringError(
                f"generation setting `turns` must be one of {', '.join(conversations.TURN_AGGREGATES)}, not {turns!r}"
            )
        embedder, regex = settings.pop("embedder", None), settings.pop("regex", None)
        for name, value in (("embedder", embedder), ("regex", regex)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ScoringError(f"generation setting `{name}` must be a non-empty string")
        if regex is not None:
            answers.compile_regex(regex)
        generation = GenerationSettings.from_dict(settings)
        return cls(generation=generation, embedder=embedder, regex=regex, turns=turns, **extra)

    def embedder_path(self) -> str:
        path = self.embedder or os.environ.get(EMBEDDER_ENV)
        if not path:
            raise ScoringError(f"answer similarity needs an embedder folder: a family `embedder` or ${EMBEDDER_ENV}")
        return path


class AnswerScorer(Scorer):
    """A scorer of the model's answers (`needs.answers`): `answers()` gives them, generated once per
    (weights, prompt, settings) and shared through the store by every answer scorer of a run.
    `settings` are the family's generation settings (and, for judges, its judge)."""

    model_kinds: ClassVar[frozenset[str]] = frozenset({CAUSAL_LM})
    fields: ClassVar[tuple[str, ...]] = ("prompt|messages|turns", "reference")
    needs: ClassVar[Needs] = Needs(answers=True)
    settings_type: ClassVar[type[AnswerOptions]] = AnswerOptions

    def __init__(self, settings: AnswerOptions | None = None, option_values: Mapping[str, object] | None = None):
        super().__init__(option_values)
        self.settings = settings or self.settings_type()

    def configured(self, **settings: object) -> Self:
        """A copy with some settings replaced (`generation`, `embedder`, `regex`, `store`, `drafting`,
        `embeddings`, judge settings)."""
        return type(self)(replace(self.settings, **settings), self.option_values)

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        """How the answers were generated (and embedded, matched or judged), plus the option values;
        a conversation's aggregate only when not the default, so earlier keys stay valid."""
        turns = {"turns": self.settings.turns} if self.settings.turns != "mean" else {}
        return (
            {
                "generation": generation_config_sha256(lm, self.settings.generation),
                "chat_template": chat_template_sha256(lm),
                "engine": ENGINE_VERSION,
            }
            | turns
            | super().config_facts(lm)
        )

    def score(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        """`score_answers` of the samples, a conversation's turns each scored as a sample of its own."""
        if not any(sample.get(conversations.TURNS) for sample in samples):
            return self.score_answers(lm, samples, max_length=max_length, token_budget=token_budget, progress=progress)
        talks = [index for index, sample in enumerate(samples) if sample.get(conversations.TURNS)]
        talked = conversations.answer_conversations(
            lm,
            [samples[index][conversations.TURNS] for index in talks],
            self.settings.store,
            self.settings.generation,
            token_budget=token_budget,
            progress=progress,
            drafting=self.settings.drafting,
        )
        answered = dict(zip(talks, talked.answers, strict=True))
        flat, owners = [], []
        for index, sample in enumerate(samples):
            asked = conversations.turn_samples(sample, answered[index]) if index in answered else [sample]
            if index in answered and "reference" in self.fields:
                asked = [turn for turn in asked if turn["reference"]]
            flat.extend(asked)
            owners.extend([index] * len(asked))
        # The turns' answers are in the store now: scoring them generates nothing more.
        output = self.score_answers(lm, flat, max_length=max_length, token_budget=token_budget, progress=None)
        values = []
        for index in range(len(samples)):
            own = [value for value, owner in zip(output.values, owners, strict=True) if owner == index]
            if index not in answered:
                values.extend(own)
            elif not own:
                raise ScoringError(f"conversation {samples[index].get('id')!r} has no turn with a reference")
            else:
                values.append(conversations.aggregate_turns(own, self.settings.turns, self.metrics))
        return ScorerOutput(values, talked.forward_passes + output.forward_passes, output.tokens_scored)

    def score_answers(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        """The values of samples with a prompt or messages (a conversation's turn is one)."""
        raise NotImplementedError

    def answers(
        self, lm: LoadedModel, samples: Sequence[Sample], token_budget: int | None, progress: ProgressCallback | None
    ):
        prompts = [messages_of(sample) for sample in samples]
        return generate_cached(
            lm,
            prompts,
            self.settings.store,
            self.settings.generation,
            token_budget=token_budget,
            progress=progress,
            drafting=self.settings.drafting,
        )


class AnswerFunctionScorer(AnswerScorer):
    """An answer scorer made of a function over one sample and its answer (see `answer_scorer`)."""

    fields: ClassVar[tuple[str, ...]] = ("prompt|messages|turns",)
    function: ClassVar[Callable[..., Mapping[str, float]]]

    def score_answers(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        generated = self.answers(lm, samples, token_budget, progress)
        values = [self.values_of(sample, text) for sample, text in zip(samples, generated.texts, strict=True)]
        return ScorerOutput(values, generated.forward_passes, int(generated.tokens.sum()))

    def values_of(self, sample: Sample, answer: str) -> dict[str, float]:
        values = type(self).function(sample, answer, **self.option_values)
        needed = {name for spec in self.metrics for name in (spec.numerator, spec.denominator) if name}
        if not isinstance(values, Mapping) or not needed <= set(values):
            raise ScoringError(f"the {self.name} scorer must return the values {sorted(needed)}, not {values!r}")
        try:
            return {name: float(values[name]) for name in needed}
        except (TypeError, ValueError) as exc:
            raise ScoringError(f"the {self.name} scorer returned a value that is not a number: {exc}") from exc


def answer_scorer(
    *,
    name: str,
    version: int,
    metrics: Sequence[MetricSpec],
    options: Mapping[str, type] | None = None,
    fields: tuple[str, ...] = ("prompt|messages|turns",),
    reads: tuple[str, ...] = (),
) -> Callable[[Callable], Callable]:
    """Register `function(sample, answer, *, option=default, …) -> {value name: number}` as an answer
    scorer: the engine generates the answers, calls it once per sample and aggregates the values by
    `metrics`. `options` declares each option's type; its default is the function's keyword default.
    `fields`: what a sample needs (a prompt by default; add `"reference"` to compare with one)."""

    def decorate(function: Callable) -> Callable:
        defaults = {
            parameter.name: parameter.default
            for parameter in inspect.signature(function).parameters.values()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }
        missing = sorted(set(options or {}) - {k for k, v in defaults.items() if v is not inspect.Parameter.empty})
        if missing:
            raise TypeError(
                f"answer scorer {name!r}: options {missing} need a keyword-only default in {function.__name__}"
            )
        attributes = {
            "name": name,
            "version": version,
            "fields": fields,
            "reads": reads,
            "options": {key: Option(kind, defaults[key]) for key, kind in (options or {}).items()},
            "metrics": tuple(metrics),
            "function": staticmethod(function),
            "__doc__": function.__doc__,
        }
        scorer_class = type(f"AnswerScorer[{name}]", (AnswerFunctionScorer,), attributes)
        function.scorer = register_scorer(scorer_class())
        return function

    return decorate


@register()
class AnswerChecks(AnswerScorer):
    name = "answer-checks"
    version = 1
    metrics = (
        MetricSpec(
            "exact_match",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="exact_match",
            # A share of 0/1 answers: changes in points of share (0 → 0 is no change, not incomparable),
            # paired with McNemar's flips like accuracy.
            delta="absolute",
            binary=True,
            description="Share of answers equal to the reference after normalisation.",
        ),
        MetricSpec(
            "contains_reference",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="contains_reference",
            delta="absolute",
            binary=True,
            description="Share of answers that contain the normalised reference as whole words.",
        ),
        MetricSpec(
            "answer_length",
            "lower",
            numerator="answer_length",
            description="Mean tokens generated per answer: a change in verbosity.",
        ),
    )

    def score_answers(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        generated = self.answers(lm, samples, token_budget, progress)
        references = [str(sample["reference"]) for sample in samples]
        exact = answers.exact_match(generated.texts, references)
        contained = answers.contains_reference(generated.texts, references)
        values = [
            {"exact_match": float(e), "contains_reference": float(c), "answer_length": int(n)}
            for e, c, n in zip(exact, contained, generated.tokens, strict=True)
        ]
        return ScorerOutput(values, generated.forward_passes, int(generated.tokens.sum()))


@register()
class AnswerSimilarity(AnswerScorer):
    name = "answer-similarity"
    version = 1
    metrics = (
        MetricSpec(
            "answer_similarity",
            "higher",
            unit_range=(-1.0, 1.0),
            numerator="answer_similarity",
            # A cosine has no natural zero: a change relative to a baseline near 0 explodes (-0.001 to
            # -0.05 is -4000 %) and flips sign below 0, so changes are in cosine points.
            delta="absolute",
            description="Mean cosine of the answer's and the reference's embeddings by the family's embedder.",
        ),
    )

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        return super().config_facts(lm) | {"embedder": self.embedder(lm).weights_sha256}

    def embedder(self, lm: LoadedModel) -> LoadedModel:
        return MODEL_CACHE.get(self.settings.embedder_path(), kind=EMBEDDING, device=str(lm.device))

    def score_answers(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        embedder = self.embedder(lm)
        generated = self.answers(lm, samples, token_budget, progress)
        references = [str(sample["reference"]) for sample in samples]
        similarity = answers.answer_similarity(embedder, generated.texts, references, cache=self.settings.embeddings)
        values = [{"answer_similarity": float(value)} for value in similarity]
        return ScorerOutput(values, generated.forward_passes, int(generated.tokens.sum()))


@register()
class AnswerRegex(AnswerScorer):
    name = "answer-regex"
    version = 1
    fields = ("prompt|messages|turns",)
    metrics = (
        MetricSpec(
            "regex_match",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="regex_match",
            description="Share of answers in which the family's regular expression finds a match.",
        ),
    )

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        return super().config_facts(lm) | {"regex": self.settings.regex}

    def score_answers(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        if not self.settings.regex:
            raise ScoringError("the answer-regex scorer needs a family `regex`")
        pattern = answers.compile_regex(self.settings.regex)
        generated = self.answers(lm, samples, token_budget, progress)
        values = [{"regex_match": float(value)} for value in answers.regex_match(generated.texts, pattern)]
        return ScorerOutput(values, generated.forward_passes, int(generated.tokens.sum()))
