"""The pointwise judge as a scorer plug-in: the model answers each prompt (sharing the answer
scorers' generation) and a judge rates every answer 1–10 against the rubric (MT-Bench
`Rating: [[N]]`). A conversation (a sample with `turns`) is answered turn by turn, the model's own
answers fed back, and the judge reads the whole of it and rates the answer to its last turn
(MT-Bench's multi-turn template).

Per sample: `judge_score` (the rating, mean of the repeats) and `judged` (1, or 0 for a judge
error), so the metric Σ judge_score / Σ judged is the mean rating over the judged samples and a
judge error is excluded from it, never a crash. The judge (an OpenAI-compatible endpoint from
$DRIFTBOARD_JUDGE_URL / $DRIFTBOARD_JUDGE_MODEL unless configured), its settings (template
version, rubric, repeats) enter the config key, so a change of judge or rubric is a new fingerprint.
An endpoint that stays down raises `JudgeUnavailable` (a ConnectionError: the run is retried) rather
than caching the samples as errors.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from evals.scoring.batching import ProgressCallback
from evals.scoring.conversations import SampleAnswers, answer_samples
from evals.scoring.errors import ScoringError
from evals.scoring.judges import (
    EndpointSettings,
    InMemoryJudgementStore,
    Judge,
    JudgementStore,
    JudgeSettings,
    JudgeUnavailable,
    LocalJudge,
    OpenAIJudge,
    items_from_samples,
    judge_items,
)
from evals.scoring.judges.judging import MAX_REPEATS
from evals.scoring.judges.remote import MAX_CONCURRENCY, MAX_RATE_PER_SECOND, MAX_TIMEOUT
from evals.scoring.judges.reports import JUDGE_SCORE
from evals.scoring.loading import CAUSAL_LM, MODEL_CACHE, LoadedModel, ModelFacts
from evals.scoring.scorers.base import Needs, Sample, ScorerOutput, register
from evals.scoring.scorers.generated_answers import AnswerOptions, AnswerScorer

# Judgements kept by the default in-process store of a worker (a long-lived process stays bounded).
LOCAL_JUDGEMENTS = InMemoryJudgementStore(capacity=100_000)


@dataclass(frozen=True)
class JudgeOptions(AnswerOptions):
    judge: Judge | None = field(default=None, compare=False)
    judging: JudgeSettings = JudgeSettings()
    judgements: JudgementStore = field(default=LOCAL_JUDGEMENTS, compare=False)

    def resolved_judge(self) -> Judge:
        return self.judge or OpenAIJudge(EndpointSettings.from_env())


# A family's `judge` settings: its own endpoint (else $DRIFTBOARD_JUDGE_URL / _MODEL), how often to
# ask, its rubric, the client's limits, and how it is calibrated against reviewers' labels
# (`CALIBRATION_DEFAULTS`). The API key only ever comes from $DRIFTBOARD_JUDGE_API_KEY.
JUDGE_SETTING_KEYS = (
    "url",
    "model",
    "repeats",
    "rubric",
    "concurrency",
    "rate_per_second",
    "timeout",
    "local",
    "min_kappa",
    "min_labels",
    "pass_rating",
    "reviewers_per_item",
)
# A judge configuration whose κ's lower bound is under `min_kappa`, or with fewer than `min_labels`
# labels, cannot push a verdict past amber; a rating of at least `pass_rating` reads as "good";
# the review queue shows an item until `reviewers_per_item` reviewers labelled it.
# None of them enters the judgements' keys.
CALIBRATION_DEFAULTS: dict[str, float | int] = {
    "min_kappa": 0.4,
    "min_labels": 30,
    "pass_rating": 7,
    "reviewers_per_item": 1,
}
_CALIBRATION_BOUNDS = {
    "min_kappa": (-1.0, 1.0),
    "min_labels": (1, 100_000),
    "pass_rating": (1, 10),
    "reviewers_per_item": (1, 20),
}
_JUDGE_NUMBERS = {"repeats": int, "concurrency": int, "rate_per_second": (int, float), "timeout": (int, float)}
_JUDGE_MAXIMA = {
    "repeats": MAX_REPEATS,
    "concurrency": MAX_CONCURRENCY,
    "rate_per_second": MAX_RATE_PER_SECOND,
    "timeout": MAX_TIMEOUT,
}


def judge_options(settings: Mapping[str, object] | None, *, resolve: bool = True) -> dict[str, object]:
    """`judge` and `judging` options for the judge scorers from a family's `judge` settings
    (`{"url": "http://judge:8000/v1", "model": "qwen", "repeats": 3, "rubric": "…"}`; `local`: a
    causal-LM folder judged G-Eval style instead of an endpoint). A `ScoringError` names a bad key
    or value. With `resolve=False` only the settings are checked (an API call), no judge is built."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(JUDGE_SETTING_KEYS))
    if unknown:
        raise ScoringError(f"unknown judge setting(s) {unknown}; known: {', '.join(JUDGE_SETTING_KEYS)}")
    for name, kinds in _JUDGE_NUMBERS.items():
        value = settings.get(name)
        if name in settings and (isinstance(value, bool) or not isinstance(value, kinds) or value <= 0):
            raise ScoringError(f"judge setting `{name}` must be a positive number, not {value!r}")
        if name in settings and value > _JUDGE_MAXIMA[name]:
            raise ScoringError(f"judge setting `{name}` must be at most {_JUDGE_MAXIMA[name]:g}, not {value!r}")
    _check_calibration(settings)
    for name in ("url", "model", "rubric", "local"):
        if name in settings and (not isinstance(settings[name], str) or not settings[name].strip()):
            raise ScoringError(f"judge setting `{name}` must be a non-empty string")
    if "url" in settings and not str(settings["url"]).startswith(("http://", "https://")):
        raise ScoringError(f"judge setting `url` must start with http:// or https://, not {settings['url']!r}")
    judging = JudgeSettings(mode="pointwise", repeats=int(settings.get("repeats", 1)), rubric=settings.get("rubric"))
    if not resolve:
        return {"judging": judging}
    if settings.get("local"):
        return {"judge": LocalJudge(MODEL_CACHE.get(str(settings["local"]), kind=CAUSAL_LM)), "judging": judging}
    limits = {name: settings[name] for name in ("concurrency", "rate_per_second", "timeout") if name in settings}
    endpoint = EndpointSettings.from_env(url=settings.get("url"), model=settings.get("model"), **limits)
    return {"judge": OpenAIJudge(endpoint), "judging": judging}


def _check_calibration(settings: Mapping[str, object]) -> None:
    for name, (low, high) in _CALIBRATION_BOUNDS.items():
        if name not in settings:
            continue
        value = settings[name]
        kinds = (int, float) if name == "min_kappa" else int
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            kind = "a number" if name == "min_kappa" else "a whole number"
            raise ScoringError(f"judge setting `{name}` must be {kind} from {low:g} to {high:g}, not {value!r}")


def judge_calibration(settings: Mapping[str, object] | None) -> dict[str, float | int]:
    """The calibration settings of a family's (already checked) `judge` settings, defaults filled in."""
    given = dict(settings or {})
    return {name: given.get(name, default) for name, default in CALIBRATION_DEFAULTS.items()}


def judged_answers(
    scorer: AnswerScorer,
    lm: LoadedModel | ModelFacts,
    samples: Sequence[Sample],
    token_budget: int | None,
    progress: ProgressCallback | None = None,
    *,
    drafting: bool = True,
) -> SampleAnswers:
    """The answers a judge reads, through the scorer's store and generation settings: a prompt's
    answer, and every turn's answer of a conversation (see `conversations.answer_samples`)."""
    return answer_samples(
        lm,
        samples,
        scorer.settings.store,
        scorer.settings.generation,
        token_budget=token_budget,
        progress=progress,
        drafting=scorer.settings.drafting if drafting else None,
    )


@register()
class JudgeScore(AnswerScorer):
    name = "judge-score"
    version = 1
    fields: ClassVar[tuple[str, ...]] = ("prompt|messages|turns",)
    # The reference, when a sample has one, is shown to the judge: it changes the judgement. A
    # conversation's turns carry their own references.
    reads: ClassVar[tuple[str, ...]] = ("prompt", "messages", "turns", "reference")
    # Judge calls wait on the network: they run on the judge queue, on the answers stored by the scoring run.
    needs: ClassVar[Needs] = Needs(answers=True, judge=True)
    settings_type: ClassVar[type[JudgeOptions]] = JudgeOptions
    metrics = (JUDGE_SCORE,)

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        return super().config_facts(lm) | self.settings.judging.facts(self.settings.resolved_judge())

    def score(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        generated = judged_answers(self, lm, samples, token_budget, progress)
        judging = JudgeSettings(
            mode="pointwise", repeats=self.settings.judging.repeats, rubric=self.settings.judging.rubric
        )
        result = judge_items(
            self.settings.resolved_judge(),
            items_from_samples(samples, generated.texts),
            self.settings.judgements,
            judging,
        )
        if result.call_failures:
            raise JudgeUnavailable(f"{len(result.call_failures)} judge calls failed: {result.call_failures[0]}")
        return ScorerOutput(result.columns("judge_score"), generated.forward_passes, generated.tokens)
