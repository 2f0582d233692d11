"""Cosine similarity of each sample's `text` and `reference` embeddings (embedding families)."""

from collections.abc import Sequence

from evals.scoring.batching import ProgressCallback
from evals.scoring.embedding import score_similarity
from evals.scoring.loading import EMBEDDING, LoadedModel
from evals.scoring.metrics import MetricSpec
from evals.scoring.scorers.base import Sample, Scorer, ScorerOutput, register


@register(default_for=[EMBEDDING])
class CosineSimilarity(Scorer):
    name = "cosine-similarity"
    version = 1
    model_kinds = frozenset({EMBEDDING})
    fields = ("text", "reference")
    skips_incomplete = False
    metrics = (
        MetricSpec(
            "similarity",
            "higher",
            unit_range=(-1.0, 1.0),
            numerator="similarity",
            description="Mean cosine of the text's and the reference's embeddings.",
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
        texts = [str(sample["text"]) for sample in samples]
        references = [sample.get("reference") for sample in samples]
        scores = score_similarity(
            lm, texts, references, max_length=max_length, token_budget=token_budget, progress=progress
        )
        return ScorerOutput(
            [{"similarity": float(v)} for v in scores.similarity], scores.forward_passes, scores.tokens_embedded
        )
