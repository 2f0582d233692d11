"""The bridge between a run row and the scoring engine: load weights, reuse cached per-sample
results from the database, and hand back arrays ready to archive as snapshots."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import Q

from driftboard.db import database_retry
from evals.models import EvalRun, GoldenDataset
from evals.models import Generation as GenerationRow
from evals.models import SampleResult as SampleResultRow
from evals.scoring.cache import ResultKey, SampleResult, ScoringConfig, fingerprint, score_samples
from evals.scoring.errors import ScoringError
from evals.scoring.generation import Generation as GenerationAnswer
from evals.scoring.generation import GenerationKey
from evals.scoring.loading import MODEL_CACHE, LoadedModel
from evals.scoring.scorers import Scorer, scorers_for
from evals.scoring.scorers.generated_answers import AnswerOptions
from registry.models import Artifact, ModelFamily
from registry.services import artifact_weights_path

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


class PermanentScoringError(Exception):
    """Retrying cannot help (unreadable weights, a dataset the scorer cannot use)."""


@dataclass
class RunResult:
    arrays: dict[str, Arrays]
    fingerprints: dict[str, dict]
    categories: dict[int, str]
    samples_scored: int
    tokens: int
    tokens_per_second: float | None
    forward_passes: int
    cached_samples: int
    device: str
    sampling: dict = field(default_factory=dict)
    # Scored every sample of the dataset (each metric then covers all the samples it applies to).
    complete: bool = False

    def categories_for(self, positions: Sequence[int]) -> list[str]:
        return [self.categories[int(p)] for p in positions]


class DatabaseResultStore:
    """The scoring engine's result cache, kept in the SampleResult table (`scorer` is `name@version`)."""

    def get_many(self, keys: Sequence[ResultKey]) -> dict[ResultKey, SampleResult]:
        if not keys:
            return {}
        wanted = set(keys)
        query = Q()
        for weights, scorer, version, config in {
            (k.weights_sha256, k.scorer, k.scorer_version, k.config_key) for k in keys
        }:
            query |= Q(weights_sha256=weights, scorer=f"{scorer}@{version}", config_key=config)
        rows = SampleResultRow.objects.filter(query, sample_sha256__in={k.sample_sha256 for k in keys})
        found = {}
        for weights, sample, scorer_version, config, values in rows.values_list(
            "weights_sha256", "sample_sha256", "scorer", "config_key", "values"
        ):
            scorer, version = scorer_version.rsplit("@", 1)
            key = ResultKey(weights, sample, scorer, int(version), config)
            if key in wanted:
                found[key] = SampleResult(values)
        return found

    def put_many(self, results) -> None:
        database_retry(lambda: self._insert(results), what="caching per-sample results")

    def _insert(self, results) -> None:
        SampleResultRow.objects.bulk_create(
            [
                SampleResultRow(
                    weights_sha256=k.weights_sha256,
                    sample_sha256=k.sample_sha256,
                    scorer=f"{k.scorer}@{k.scorer_version}",
                    config_key=k.config_key,
                    values=r.to_dict(),
                )
                for k, r in results.items()
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )


class DatabaseGenerationStore:
    """The generation cache, kept in the Generation table: answers survive the worker that made them."""

    def get_many(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, GenerationAnswer]:
        if not keys:
            return {}
        wanted = set(keys)
        query = Q()
        for weights, config, template, engine in {
            (k.weights_sha256, k.config_sha256, k.chat_template_sha256, k.engine_version) for k in keys
        }:
            query |= Q(
                weights_sha256=weights, config_sha256=config, chat_template_sha256=template, engine_version=engine
            )
        rows = GenerationRow.objects.filter(query, prompt_sha256__in={k.prompt_sha256 for k in keys})
        found = {}
        for *fields, text, tokens, finish in rows.values_list(*GenerationKey._fields, "text", "tokens", "finish"):
            key = GenerationKey(*fields)
            if key in wanted:
                found[key] = GenerationAnswer(text=text, tokens=tokens, finish=finish)
        return found

    def put_many(self, generations) -> None:
        database_retry(lambda: self._insert(generations), what="caching generated answers")

    def _insert(self, generations) -> None:
        GenerationRow.objects.bulk_create(
            [
                GenerationRow(**key._asdict(), text=g.text, tokens=g.tokens, finish=g.finish)
                for key, g in generations.items()
            ],
            batch_size=500,
            ignore_conflicts=True,
        )


def family_scorers(family: ModelFamily) -> list[Scorer]:
    """The family's scorers, configured with its generation settings and the database generation store."""
    scorers = scorers_for(family.kind, family.scorers)
    if not any(hasattr(scorer, "configured") for scorer in scorers):
        return scorers
    try:
        options = AnswerOptions.from_settings(family.generation)
    except ScoringError as exc:
        raise PermanentScoringError(f"The family's generation settings are invalid: {exc}") from exc
    configure = {"generation": options.generation, "embedder": options.embedder, "regex": options.regex}
    return [
        scorer.configured(**configure, store=DatabaseGenerationStore()) if hasattr(scorer, "configured") else scorer
        for scorer in scorers
    ]


def load_model(artifact: Artifact) -> LoadedModel:
    family = artifact.family
    try:
        return MODEL_CACHE.get(
            artifact_weights_path(artifact),
            kind=family.kind,
            base_dir=family.base_path or None,
            weights_sha256=artifact.sha256,
        )
    except (ScoringError, OSError, ValueError) as exc:
        raise PermanentScoringError(f"The weights could not be loaded: {exc}") from exc


def dataset_samples(dataset: GoldenDataset, positions: Sequence[int] | None = None) -> list[dict]:
    samples = dataset.samples.order_by("position")
    if positions is not None:
        samples = samples.filter(position__in=list(positions))
    return list(samples.values("position", "text", "reference", "category", "prompt", "messages"))


def scoring_config(family: ModelFamily) -> ScoringConfig:
    return ScoringConfig(
        max_length=family.max_length,
        scorers=tuple(family.scorers),
        chunk_samples=settings.DRIFTBOARD_RESULT_CHUNK_SAMPLES,
    )


def score_samples_of_run(run: EvalRun, samples: list[dict], progress: Callable[[int], None]) -> RunResult:
    lm = load_model(run.artifact)
    family = run.artifact.family
    config = scoring_config(family)
    scorers = family_scorers(family)
    try:
        scored = score_samples(lm, samples, DatabaseResultStore(), config, scorers=scorers, progress=progress)
        fingerprints = run_fingerprints(lm, scorers, config, run.dataset)
    except ScoringError as exc:
        raise PermanentScoringError(f"{run.dataset}: {exc}") from exc
    positions = np.array([s["position"] for s in samples], dtype=np.int32)
    arrays = {}
    for metric in scored.metrics:
        indices, numerators, denominators = scored.arrays(metric)
        arrays[metric] = (positions[indices], numerators, denominators)
    tokens = int(scored.tokens_scored)
    return RunResult(
        arrays=arrays,
        fingerprints=fingerprints,
        categories={s["position"]: s["category"] for s in samples},
        samples_scored=len(samples),
        complete=len(samples) >= run.dataset.sample_count,
        tokens=tokens,
        tokens_per_second=tokens / scored.seconds if scored.seconds > 0 and tokens else None,
        forward_passes=scored.forward_passes,
        cached_samples=scored.samples_reused,
        device=lm.device.type,
    )


def run_fingerprints(
    lm: LoadedModel, scorers: Sequence[Scorer], config: ScoringConfig, dataset: GoldenDataset
) -> dict[str, dict]:
    """The fingerprint of each metric the run yields (the scorer's, shared by its metrics)."""
    fingerprints = {}
    for scorer in scorers:
        fp = fingerprint(lm, scorer, config, dataset.sha256)
        fingerprints.update({spec.name: fp for spec in scorer.metrics})
    return fingerprints


def score_full_run(*, run: EvalRun, progress: Callable[[int], None]) -> RunResult:
    return score_samples_of_run(run, dataset_samples(run.dataset), progress)
