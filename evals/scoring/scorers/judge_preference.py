"""The pairwise judge as a scorer plug-in: a judge compares the candidate's answer to each prompt with
the baseline's answer to the same prompt, in both orders (MT-Bench `[[A]]` / `[[B]]` / `[[C]]`).

Per sample: `judge_preference` (+1 the candidate's answer is better, −1 the baseline's, 0 a tie or
orders that disagree; the mean over the repeats) and `judged` (1, or 0 for a judge error), so the
metric Σ judge_preference / Σ judged is the mean preference over the judged samples. It is a
one-sample metric: the values already compare the candidate with its baseline, and the verdict
bootstraps them around 0 (`evals.scoring.judges.preference`) instead of pairing two snapshots.

A conversation (a sample with `turns`) is judged whole: the judge reads the candidate's and the
baseline's conversations, each answered turn by turn after its own earlier answers, and prefers the
better answer to the last turn (MT-Bench's multi-turn pairwise template, both orders).

Both answers come from the generation store: the candidate's (generated here when the model is
loaded, else stored by its scoring run) and the baseline's, found by the baseline's model facts
(`baseline`: a `ModelFacts` or a loaded model). The baseline's weights and answer settings enter
the config key and the fingerprint: a new baseline is a new result, never a cached one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from evals.scoring.batching import ProgressCallback
from evals.scoring.errors import ScoringError
from evals.scoring.generation import ENGINE_VERSION, chat_template_sha256, generation_config_sha256
from evals.scoring.judges import JudgeSettings, JudgeUnavailable, items_from_samples, judge_items
from evals.scoring.loading import LoadedModel, ModelFacts
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers.base import Needs, Sample, ScorerOutput, register
from evals.scoring.scorers.generated_answers import AnswerScorer
from evals.scoring.scorers.judge_score import JudgeOptions, judged_answers

JUDGE_PREFERENCE = MetricSpec(
    "judge_preference",
    "higher",
    unit_range=(-1.0, 1.0),
    numerator="judge_preference",
    denominator="judged",
    one_sample=True,
    description="Mean preference of the judge for the candidate's answer over the baseline's (+1 / 0 / −1), "
    "both orders asked; 0 is no change.",
)


@dataclass(frozen=True)
class PreferenceOptions(JudgeOptions):
    # The model whose stored answers the candidate's are compared with (the production baseline).
    baseline: LoadedModel | ModelFacts | None = None


@register()
class JudgePreference(AnswerScorer):
    name = "judge-preference"
    version = 1
    fields: ClassVar[tuple[str, ...]] = ("prompt|messages|turns",)
    # The reference, when a sample has one, is shown to the judge: it changes the judgement.
    reads: ClassVar[tuple[str, ...]] = ("prompt", "messages", "turns", "reference")
    needs: ClassVar[Needs] = Needs(answers=True, judge=True, baseline=True)
    settings_type: ClassVar[type[PreferenceOptions]] = PreferenceOptions
    metrics = (JUDGE_PREFERENCE,)

    def judging(self) -> JudgeSettings:
        return replace(self.settings.judging, mode="pairwise")

    def config_facts(self, lm: LoadedModel) -> dict[str, object]:
        return (
            super().config_facts(lm)
            | self.judging().facts(self.settings.resolved_judge())
            | {"baseline": self.baseline_facts()}
        )

    def baseline_facts(self) -> dict[str, str] | None:
        """What the baseline's answers are keyed by (None until configured with a baseline)."""
        baseline = self.settings.baseline
        if baseline is None:
            return None
        return {
            "weights_sha256": baseline.weights_sha256,
            "generation": generation_config_sha256(baseline, self.settings.generation),
            "chat_template": chat_template_sha256(baseline),
            "engine": ENGINE_VERSION,
        }

    def baseline_answers(self, samples: Sequence[Sample], token_budget: int | None):
        if self.settings.baseline is None:
            raise ScoringError("the judge-preference scorer needs the baseline's model facts (`baseline`)")
        return judged_answers(self, self.settings.baseline, samples, token_budget, drafting=False)

    def score(
        self,
        lm: LoadedModel,
        samples: Sequence[Sample],
        *,
        max_length: int | None,
        token_budget: int | None,
        progress: ProgressCallback | None,
    ) -> ScorerOutput:
        baseline = self.baseline_answers(samples, token_budget)
        generated = judged_answers(self, lm, samples, token_budget, progress)
        result = judge_items(
            self.settings.resolved_judge(),
            items_from_samples(samples, generated.texts, baseline.texts),
            self.settings.judgements,
            self.judging(),
        )
        if result.call_failures:
            raise JudgeUnavailable(f"{len(result.call_failures)} judge calls failed: {result.call_failures[0]}")
        passes = generated.forward_passes + baseline.forward_passes
        return ScorerOutput(result.columns("judge_preference"), passes, generated.tokens)
