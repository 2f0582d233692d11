"""Causal NLL: bits per byte and perplexity, as lm-evaluation-harness's `loglikelihood_rolling`."""

from collections.abc import Sequence

from evals.scoring.batching import ProgressCallback
from evals.scoring.causal import score_causal
from evals.scoring.loading import CAUSAL_LM, LoadedModel
from evals.scoring.metrics import LN2, MetricSpec
from evals.scoring.scorers.base import Sample, Scorer, ScorerOutput, register


@register(default_for=[CAUSAL_LM])
class CausalNll(Scorer):
    name = "causal-nll"
    version = 1
    model_kinds = frozenset({CAUSAL_LM})
    fields = ("text",)
    skips_incomplete = True
    metrics = (
        MetricSpec(
            "bits_per_byte",
            "lower",
            numerator="nll",
            numerator_scale=1 / LN2,
            denominator="bytes",
            tokenizer_free=True,
            description="Σ NLL / (ln 2 · Σ UTF-8 bytes): comparable across tokenizers.",
        ),
        MetricSpec(
            "perplexity",
            "lower",
            "exp",
            numerator="nll",
            denominator="tokens",
            description="exp(Σ NLL / Σ tokens): tokenizer-dependent.",
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
        scores = score_causal(lm, texts, max_length=max_length, token_budget=token_budget, progress=progress)
        values = [
            {"nll": float(nll), "tokens": int(tokens), "bytes": int(n_bytes)}
            for nll, tokens, n_bytes in zip(scores.nll, scores.tokens, scores.bytes, strict=True)
        ]
        return ScorerOutput(values, scores.forward_passes, scores.tokens_scored)
