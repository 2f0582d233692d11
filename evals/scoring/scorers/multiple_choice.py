"""Multiple choice: `acc` and `acc_norm` as lm-evaluation-harness's `multiple_choice` output type.

A question is a sample's `prompt` (the context) or its chat `messages` (rendered by the chat
template, the choices then following without a delimiter, as the harness does with a chat
template), its `choices` and its gold `answer` (one index, or several when several are right).
Each choice is scored as the continuation `target_delimiter + choice` (see `choices.py`);
`accuracy` is 1 when the most likely choice is gold, `accuracy_norm` when it is after dividing each
log-likelihood by the choice's length in characters; ties go to the first choice, as numpy's
argmax does for the harness. `gold_probability` is the gold choices' share of the probability the
model gives the choices, a continuous signal beside the two 0/1 ones.
"""

from collections.abc import Sequence

import numpy as np

from evals.scoring.batching import ProgressCallback
from evals.scoring.choices import choice_loglikelihoods
from evals.scoring.errors import SampleError
from evals.scoring.loading import CAUSAL_LM, LoadedModel
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers.base import Option, Sample, Scorer, ScorerOutput, register


def question_values(loglikelihoods: np.ndarray, choices: Sequence[str], gold: Sequence[int]) -> dict[str, float]:
    """A question's `accuracy`, `accuracy_norm` and `gold_probability` from its choices' log-likelihoods."""
    lengths = np.array([float(len(choice)) for choice in choices])
    probabilities = np.exp(loglikelihoods - loglikelihoods.max())
    return {
        "accuracy": float(int(np.argmax(loglikelihoods)) in gold),
        "accuracy_norm": float(int(np.argmax(loglikelihoods / lengths)) in gold),
        "gold_probability": float(probabilities[list(gold)].sum() / probabilities.sum()),
    }


@register()
class MultipleChoice(Scorer):
    name = "multiple-choice"
    version = 1
    model_kinds = frozenset({CAUSAL_LM})
    fields = ("prompt|messages", "choices", "answer")
    options = {
        "target_delimiter": Option(str, " ", "what separates the context from each choice (the harness's default)")
    }
    metrics = (
        MetricSpec(
            "accuracy",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="accuracy",
            delta="absolute",
            binary=True,
            description="Share of questions whose most likely choice is gold (the harness's acc).",
        ),
        MetricSpec(
            "accuracy_norm",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="accuracy_norm",
            delta="absolute",
            binary=True,
            display_name="accuracy (length-normalised)",
            description="As accuracy, each choice's log-likelihood divided by its length (the harness's acc_norm).",
        ),
        MetricSpec(
            "gold_probability",
            "higher",
            unit_range=(0.0, 1.0),
            numerator="gold_probability",
            delta="absolute",
            display_name="gold choice probability",
            description="The gold choices' share of the probability the model gives the choices.",
        ),
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
        values, passes, tokens = [], 0, 0
        for done, sample in enumerate(samples, start=1):
            context, delimiter = self.context(lm, sample)
            choices = [str(choice) for choice in sample["choices"]]
            scores = choice_loglikelihoods(lm, context, [delimiter + c for c in choices], max_length=max_length)
            values.append(question_values(scores.loglikelihoods, choices, sample["answer"]))
            passes += scores.forward_passes
            tokens += scores.tokens
            if progress is not None:
                progress(done)
        return ScorerOutput(values, passes, tokens)

    def context(self, lm: LoadedModel, sample: Sample) -> tuple[str, str]:
        """The text the choices continue, and the delimiter before each choice."""
        if not sample.get("messages"):
            return str(sample["prompt"]), str(self.option_values["target_delimiter"])
        if not lm.tokenizer.chat_template:
            raise SampleError(f"sample {sample.get('id')!r} has chat messages, and the tokenizer has no chat template")
        return lm.tokenizer.apply_chat_template(sample["messages"], add_generation_prompt=True, tokenize=False), ""
