"""The bridge between a run row and the scoring engine: load weights, reuse cached per-sample
results from the database, and hand back arrays ready to archive as snapshots."""

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import Q

from driftboard.db import database_retry
from evals import selectors
from evals.models import EvalRun, GoldenDataset
from evals.models import Generation as GenerationRow
from evals.models import Judgement as JudgementRow
from evals.models import SampleResult as SampleResultRow
from evals.models import TextEmbedding as TextEmbeddingRow
from evals.run_kinds import GATING_KINDS
from evals.run_records import JudgeCalls, JudgedBaseline, JudgeRunStats, Judging, Sampling
from evals.scoring import conversations
from evals.scoring.cache import (
    ResultKey,
    SampleResult,
    ScoredSamples,
    ScoringConfig,
    applicable,
    fingerprint,
    score_samples,
)
from evals.scoring.embedding import EMBEDDING_CACHE, EmbeddingKey, TieredEmbeddings
from evals.scoring.errors import ScoringError
from evals.scoring.generation import Draft, Drafting, GenerationKey, generation_keys, messages_of
from evals.scoring.generation import Generation as GenerationAnswer
from evals.scoring.generation.drafts import StoredAnswer, chosen_drafts
from evals.scoring.judges import Judge, Judgement, JudgementKey
from evals.scoring.loading import MODEL_CACHE, LoadedModel, ModelFacts, model_facts
from evals.scoring.scorers import Scorer, needs_baseline, on_judge_queue, scorers_for
from evals.scoring.scorers.generated_answers import AnswerOptions
from evals.scoring.scorers.judge_score import judge_options
from registry.models import Artifact, ModelFamily
from registry.selectors import artifact_weights_path

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
    sampling: Sampling = field(default_factory=Sampling)
    # A family with judges: the model facts their run keys the stored answers by (see EvalRun.judging).
    judging: Judging = field(default_factory=Judging)
    # Scored every sample of the dataset (each metric then covers all the samples it applies to).
    complete: bool = False
    # What drafting greedy answers from stored ones did (see `run_drafting`); empty when nothing was drafted.
    drafting: dict = field(default_factory=dict)

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
                GenerationRow(
                    **key._asdict(),
                    text=g.text,
                    tokens=g.tokens,
                    finish=g.finish,
                    drafted_from=g.drafted_from,
                    departs_at_token=g.departs_at_token,
                )
                for key, g in generations.items()
            ],
            batch_size=500,
            ignore_conflicts=True,
        )


class DatabaseJudgementStore:
    """The judgement cache, kept in the Judgement table (replies of every worker, shown on the review page)."""

    def get_many(self, keys: Sequence[JudgementKey]) -> dict[JudgementKey, Judgement]:
        if not keys:
            return {}
        wanted = set(keys)
        query = Q()
        for judge, template in {(k.judge, k.template_version) for k in keys}:
            query |= Q(judge=judge, template_version=template)
        rows = JudgementRow.objects.filter(query, request_sha256__in={k.request_sha256 for k in keys})
        found = {}
        for *fields, reply, value, error in rows.values_list(*JudgementKey._fields, "reply", "value", "error"):
            key = JudgementKey(*fields)
            if key in wanted:
                found[key] = Judgement(reply=reply, value=value, error=error or None)
        return found

    def put_many(self, judgements) -> None:
        database_retry(lambda: self._insert(judgements), what="caching judgements")

    def _insert(self, judgements) -> None:
        JudgementRow.objects.bulk_create(
            [
                JudgementRow(**key._asdict(), reply=j.reply, value=j.value, error=j.error or "")
                for key, j in judgements.items()
            ],
            batch_size=500,
            ignore_conflicts=True,
        )


class DatabaseEmbeddingStore:
    """Embeddings of answers and references, kept in the TextEmbedding table: a reference is embedded
    once for every worker and process, not once per process."""

    def get_many(self, keys: Sequence[EmbeddingKey]) -> dict[EmbeddingKey, np.ndarray]:
        found = {}
        for (weights, max_length, dtype, device), texts in _by_embedder(set(keys)).items():
            for start in range(0, len(texts), _EMBEDDING_QUERY_TEXTS):
                rows = TextEmbeddingRow.objects.filter(
                    weights_sha256=weights,
                    max_length=max_length,
                    dtype=dtype,
                    device=device,
                    text_sha256__in=texts[start : start + _EMBEDDING_QUERY_TEXTS],
                )
                for text, vector in rows.values_list("text_sha256", "vector"):
                    key = EmbeddingKey(weights, max_length, dtype, device, text)
                    found[key] = np.frombuffer(bytes(vector), dtype="<f4").copy()
        return found

    def put_many(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None:
        database_retry(lambda: self._insert(embeddings), what="keeping embeddings")

    def _insert(self, embeddings: Mapping[EmbeddingKey, np.ndarray]) -> None:
        TextEmbeddingRow.objects.bulk_create(
            [
                TextEmbeddingRow(**key._asdict(), vector=np.asarray(vector, dtype="<f4").tobytes())
                for key, vector in embeddings.items()
            ],
            batch_size=500,
            ignore_conflicts=True,
        )


# Text hashes per query: well under SQLite's variable limit.
_EMBEDDING_QUERY_TEXTS = 500


def _by_embedder(keys: Iterable[EmbeddingKey]) -> dict[tuple[str, int, str, str], list[str]]:
    groups: dict[tuple[str, int, str, str], list[str]] = {}
    for key in keys:
        groups.setdefault((key.weights_sha256, key.max_length, key.dtype, key.device), []).append(key.text_sha256)
    return groups


def family_scorers(family: ModelFamily, *, judges: bool = True, drafting: Drafting | None = None) -> list[Scorer]:
    """The family's scorers with their option values, configured with its generation and judge
    settings and the database stores (every scorer that needs answers gets the same settings).

    With `judges=False` (a scoring worker, where judge scorers only generate the answers they will
    judge) the family's judge is not built: no endpoint settings needed there, no local judge loaded.
    """
    profile = selectors.evaluation_profile(family)
    try:
        scorers = scorers_for(family.kind, profile.scorers, profile.scorer_options)
        if not any(scorer.needs.answers for scorer in scorers):
            return scorers
        options = AnswerOptions.from_settings(profile.generation)
        judging = judges and any(on_judge_queue(s) for s in scorers)
        judge = judge_options(profile.judge) | {"judgements": DatabaseJudgementStore()} if judging else {}
    except ScoringError as exc:
        raise PermanentScoringError(f"The family's scorer, generation or judge settings are invalid: {exc}") from exc
    answers = {
        "generation": options.generation,
        "embedder": options.embedder,
        "regex": options.regex,
        "store": DatabaseGenerationStore(),
        "drafting": drafting,
        "embeddings": TieredEmbeddings(EMBEDDING_CACHE, DatabaseEmbeddingStore()),
    }
    return [_configured(scorer, answers, judge) if scorer.needs.answers else scorer for scorer in scorers]


def _configured(scorer: Scorer, answers: dict, judging: dict) -> Scorer:
    return scorer.configured(**answers, **(judging if on_judge_queue(scorer) else {}))


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
    return list(
        samples.values("position", "text", "reference", "category", "prompt", "messages", "choices", "answer", "turns")
    )


def scoring_config(family: ModelFamily) -> ScoringConfig:
    profile = selectors.evaluation_profile(family)
    return ScoringConfig(
        max_length=profile.max_length,
        scorers=tuple(profile.scorers),
        chunk_samples=settings.DRIFTBOARD_RESULT_CHUNK_SAMPLES,
    )


def scoring_scorers(family: ModelFamily) -> list[Scorer]:
    """The family's scorers that run on a scoring worker (all but the judges)."""
    return [scorer for scorer in family_scorers(family, judges=False) if not on_judge_queue(scorer)]


def judge_scorers(family: ModelFamily) -> list[Scorer]:
    """The family's scorers that ask a judge about stored answers (they run on the judge queue)."""
    return [scorer for scorer in family_scorers(family) if on_judge_queue(scorer)]


def judged_positions(judges: Sequence[Scorer], samples: list[dict]) -> list[int]:
    """Indices of the samples some judge applies to (those with a prompt, messages or turns): what a
    judge run counts, not the whole golden set."""
    return sorted({int(index) for judge in judges for index in applicable(judge, samples)})


def judge_run_size(family: ModelFamily, dataset: GoldenDataset) -> int:
    """The samples a judge run of the family on the dataset will judge, for its progress."""
    return len(judged_positions(judge_scorers(family), dataset_samples(dataset)))


def score_samples_of_run(run: EvalRun, samples: list[dict], progress: Callable[[int], None]) -> RunResult:
    """Score on this worker; for a family with judges, also generate (and store) the answers they
    will judge, and record the model facts the judge run keys them by."""
    lm = load_model(run.artifact)
    family = run.artifact.family
    config = scoring_config(family)
    drafting = run_drafting(run)
    # Judge scorers here only generate their answers.
    configured = family_scorers(family, judges=False, drafting=drafting)
    scorers = [scorer for scorer in configured if not on_judge_queue(scorer)]
    judges = [scorer for scorer in configured if on_judge_queue(scorer)]
    try:
        scored = score_samples(lm, samples, DatabaseResultStore(), config, scorers=scorers, progress=progress)
        fingerprints = run_fingerprints(lm, scorers, config, run.dataset)
        generated = _answers_for_judges(lm, judges, samples, config)
    except ScoringError as exc:
        raise PermanentScoringError(f"{run.dataset}: {exc}") from exc
    return _run_result(
        run,
        samples,
        scored,
        fingerprints,
        device=lm.device.type,
        extra_passes=generated,
        judging=Judging(model=model_facts(lm).to_dict()) if judges else Judging(),
        drafting=drafting.stats.as_dict() if drafting.stats.answers else {},
    )


def run_drafting(run: EvalRun) -> Drafting:
    """Where a run's greedy answers are drafted from: the stored answers of the family's production
    baseline, else of the artifact's parent, else of the family's newest other scored artifact."""
    artifact = run.artifact
    newest = (
        Artifact.objects.filter(family_id=artifact.family_id, runs__status=EvalRun.Status.SUCCEEDED)
        .exclude(pk=artifact.pk)
        .order_by("-version")
        .first()
    )
    candidates = [selectors.baseline_for(artifact), artifact.parent, newest]
    sources = [source.sha256 for source in candidates if source is not None and source.sha256 != artifact.sha256]
    lookup = DatabaseDraftLookup(list(dict.fromkeys(sources)))
    return Drafting(lookup=lookup, audit_every=settings.DRIFTBOARD_DRAFT_AUDIT)


class DatabaseDraftLookup:
    """Drafts from the Generation table: for each answer to generate, the stored answer of the first
    source weights to the same prompt under the same chat template, preferably under the same
    settings (`chosen_drafts`)."""

    def __init__(self, sources: list[str]) -> None:
        self.sources = sources

    def __call__(self, keys: Sequence[GenerationKey]) -> dict[GenerationKey, Draft]:
        if not keys or not self.sources:
            return {}
        rows = GenerationRow.objects.filter(
            weights_sha256__in=self.sources, prompt_sha256__in={key.prompt_sha256 for key in keys}
        ).values_list("weights_sha256", "prompt_sha256", "config_sha256", "chat_template_sha256", "text", "finish")
        stored: dict[tuple[str, str], list[StoredAnswer]] = {}
        for weights, prompt, config, template, text, finish in rows:
            stored.setdefault((prompt, template), []).append(StoredAnswer(weights, config, text, finish))
        return chosen_drafts(keys, stored, self.sources)


def _answers_for_judges(lm: LoadedModel, judges: Sequence[Scorer], samples: list[dict], config: ScoringConfig) -> int:
    """Generate the answers the judges will need (the answer scorers may have stored them already):
    a prompt's answer, every turn of a conversation after the model's own earlier answers."""
    passes = 0
    for scorer in judges:
        chosen = [samples[i] for i in applicable(scorer, samples)]
        if chosen:
            settings = scorer.settings
            passes += conversations.answer_samples(
                lm,
                chosen,
                settings.store,
                settings.generation,
                token_budget=config.token_budget,
                drafting=settings.drafting,
            ).forward_passes
    return passes


def _run_result(
    run: EvalRun,
    samples: list[dict],
    scored,
    fingerprints: dict[str, dict],
    *,
    device: str,
    extra_passes: int = 0,
    judging: Judging | None = None,
    complete: bool | None = None,
    drafting: dict | None = None,
) -> RunResult:
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
        complete=len(samples) >= run.dataset.sample_count if complete is None else complete,
        tokens=tokens,
        tokens_per_second=tokens / scored.seconds if scored.seconds > 0 and tokens else None,
        forward_passes=scored.forward_passes + extra_passes,
        cached_samples=scored.samples_reused,
        device=device,
        judging=judging or Judging(),
        drafting=drafting or {},
    )


def score_judge_run(*, run: EvalRun, progress: Callable[[int], None]) -> RunResult:
    """Judge the answers the scoring run stored, on the judge queue: no weights are loaded, the
    model facts recorded by the scoring run key the answers and the results."""
    family = run.artifact.family
    try:
        facts = ModelFacts.from_dict(run.judging_record.model)
    except (KeyError, TypeError, ValueError, ScoringError) as exc:
        raise PermanentScoringError(f"Run {run.pk} has no model facts to find the answers by: {exc}") from exc
    config = scoring_config(family)
    samples = dataset_samples(run.dataset)
    judges, baseline = judge_scorers(family), judge_baseline(run)
    try:
        judged = set(judged_positions(judges, samples)) - _unanswered(facts, judges, samples)
        answered = [sample for index, sample in enumerate(samples) if index in judged]
        groups, compared = _judged_groups(judges, baseline, answered)
        scorers = [scorer for _, group in groups for scorer in group]
        scored = _score_groups(facts, answered, groups, config, progress)
        fingerprints = run_fingerprints(facts, scorers, config, run.dataset)
    except ScoringError as exc:
        raise PermanentScoringError(f"{run.dataset}: {exc}") from exc
    # Scorers configured together share one judge: its stats count once.
    asked = {
        id(scorer.settings.judge): scorer.settings.judge for scorer in scorers if scorer.settings.judge is not None
    }
    stats = _stats_total(asked.values(), judge_errors=_judge_errors(scored))
    judging = dataclasses.replace(run.judging_record, stats=stats, baseline=compared)
    complete = len(judged) == len(judged_positions(judges, samples)) and len(samples) >= run.dataset.sample_count
    return _run_result(run, answered, scored, fingerprints, device="judge", judging=judging, complete=complete)


# Pairwise judges (judge-preference) compare the candidate's stored answers with those of the
# production baseline, found by the model facts the baseline's own runs recorded.


@dataclass(frozen=True)
class JudgeBaseline:
    artifact: Artifact
    facts: ModelFacts


def judge_baseline(run: EvalRun) -> JudgeBaseline | str:
    """The baseline whose answers a judge run compares the candidate's with, or why there is none."""
    baseline = selectors.baseline_for(run.artifact)
    if baseline is None:
        return "No production baseline yet: no answers to compare with."
    recorded = (
        EvalRun.objects.filter(
            artifact=baseline,
            dataset=run.dataset,
            status=EvalRun.Status.SUCCEEDED,
            kind__in=GATING_KINDS,
            judging__has_key="model",
        )
        .order_by("-finished_at", "-id")
        .values_list("judging", flat=True)
        .first()
    )
    if recorded is None:
        return f"The baseline v{baseline.version} has no stored answers on {run.dataset}."
    try:
        return JudgeBaseline(baseline, ModelFacts.from_dict(Judging.from_json(recorded).model))
    except (KeyError, TypeError, ValueError, ScoringError) as exc:
        return f"The model facts of the baseline v{baseline.version} are unreadable: {exc}"


def _judged_groups(
    scorers: Sequence[Scorer], baseline: JudgeBaseline | str, answered: list[dict]
) -> tuple[list[tuple[np.ndarray, list[Scorer]]], JudgedBaseline | None]:
    """The judge scorers with the samples each judges (indices into `answered`), and what the
    pairwise ones were compared with (`baseline`, for the run's `judging`). A pairwise scorer is
    configured with the baseline's facts and judges the samples the baseline has an answer to; with
    no baseline, or no such answer, it is left out: its metric is not computed."""
    groups = [(np.arange(len(answered)), [scorer for scorer in scorers if not needs_baseline(scorer)])]
    pairwise = [scorer for scorer in scorers if needs_baseline(scorer)]
    if not pairwise:
        return groups, None
    if isinstance(baseline, str):
        return groups, JudgedBaseline(skipped=baseline)
    compared = JudgedBaseline(artifact=baseline.artifact.pk, version=baseline.artifact.version)
    for scorer in pairwise:
        configured = scorer.configured(baseline=baseline.facts)
        missing = _unanswered(baseline.facts, [configured], answered)
        judged = np.array([index for index in range(len(answered)) if index not in missing], dtype=np.int64)
        if len(applicable(configured, [answered[i] for i in judged])):
            groups.append((judged, [configured]))
            compared = dataclasses.replace(compared, answers=len(judged))
        else:
            skipped = f"The baseline v{baseline.artifact.version} has no stored answer to these prompts."
            compared = dataclasses.replace(compared, skipped=skipped)
    return groups, compared


def _score_groups(
    facts: ModelFacts,
    samples: list[dict],
    groups: Sequence[tuple[np.ndarray, list[Scorer]]],
    config: ScoringConfig,
    progress: Callable[[int], None],
) -> ScoredSamples:
    """Each group of scorers on its own samples (indices into `samples`), as one result over `samples`."""
    work = sum(len(indices) for indices, group in groups if group)
    parts, before = [], 0
    for indices, group in groups:
        if group and len(indices):
            chosen = [samples[i] for i in indices]
            counted = _group_progress(progress, before=before, work=work, total=len(samples))
            part = score_samples(facts, chosen, DatabaseResultStore(), config, scorers=group, progress=counted)
            before += len(indices)
            parts.append((indices, part))
    return ScoredSamples(
        results={
            name: dataclasses.replace(values, indices=indices[values.indices])
            for indices, part in parts
            for name, values in part.results.items()
        },
        samples_computed=sum(part.samples_computed for _, part in parts),
        samples_reused=sum(part.samples_reused for _, part in parts),
        forward_passes=sum(part.forward_passes for _, part in parts),
        tokens_scored=sum(part.tokens_scored for _, part in parts),
        seconds=sum(part.seconds for _, part in parts),
        specs={name: spec for _, part in parts for name, spec in part.specs.items()},
    )


def _group_progress(progress: Callable[[int], None], *, before: int, work: int, total: int) -> Callable[[int], None]:
    """Groups run one after another, mostly over the same samples (likelihood on all, answers on those with
    a prompt): the run reports the share of all groups' samples done, in samples of the dataset, so its
    count never passes its total."""
    return lambda done: progress(total * (before + done) // work)


def _unanswered(facts: ModelFacts, scorers: Sequence[Scorer], samples: list[dict]) -> set[int]:
    """Indices of the samples a judge applies to whose answer was never stored (a sampled run
    answered only part of the golden set): they are left out, not generated here."""
    missing: set[int] = set()
    for scorer in scorers:
        indices = applicable(scorer, samples)
        single = [int(i) for i in indices if not samples[i].get(conversations.TURNS)]
        keys = generation_keys(facts, [messages_of(samples[i]) for i in single], scorer.settings.generation)
        found = scorer.settings.store.get_many(keys)
        missing |= {index for index, key in zip(single, keys, strict=True) if key not in found}
        talks = [int(i) for i in indices if samples[i].get(conversations.TURNS)]
        stored = conversations.stored_conversations(
            facts, [samples[i][conversations.TURNS] for i in talks], scorer.settings.store, scorer.settings.generation
        )
        missing |= {index for index, answers in zip(talks, stored, strict=True) if answers is None}
    return missing


def _judge_errors(scored) -> int:
    """Samples whose judgement failed (excluded from the metric: `judged` is 0 for them)."""
    return sum(
        int((result.values["judged"] == 0).sum()) for result in scored.results.values() if "judged" in result.values
    )


def _stats_total(judges: Iterable[Judge], *, judge_errors: int) -> JudgeRunStats:
    """The judges' calls summed, and per judge identity what its calls are priced by."""
    judges = list(judges)
    return JudgeRunStats(
        **{
            name: sum(getattr(judge.stats, name) for judge in judges)
            for name in ("calls", "failures", "retries", "seconds", "prompt_tokens", "completion_tokens")
        },
        slowest=max((judge.stats.slowest for judge in judges), default=0.0),
        judge_errors=judge_errors,
        by_judge={
            judge.identity: JudgeCalls(
                calls=judge.stats.calls,
                prompt_tokens=judge.stats.prompt_tokens,
                completion_tokens=judge.stats.completion_tokens,
            )
            for judge in judges
        },
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
