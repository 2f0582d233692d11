"""Reads shared by the pages, the API, the charts and the PR comment."""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from driftboard.formatting import percent
from evals.models import (
    DriftVerdict,
    EvalRun,
    EvaluationProfile,
    Experiment,
    ExperimentRun,
    Generation,
    GoldenDataset,
    GoldenSample,
    Judgement,
    MetricSnapshot,
    Threshold,
    TrafficWindow,
)
from evals.run_kinds import JUDGING_KINDS
from evals.scoring import drift
from evals.scoring.conversations import turn_messages, user_turns
from evals.scoring.errors import ScoringError
from evals.scoring.generation import DraftStats, messages_of
from evals.scoring.hashing import prompt_sha256
from evals.scoring.judges.judging import JudgementKey, JudgeSettings, items_from_samples, judgement_keys
from evals.scoring.judges.templates import TEMPLATE_VERSION
from evals.scoring.scorers import METRICS
from evals.scoring.summary import per_sample_values
from registry import selectors as registry_selectors
from registry.models import Artifact, ModelFamily, PromotionEvent

# Text shown for a regressed sample on pages; the PR comment shortens further.
EXCERPT_CHARS = 240


def dataset_latest(name: str) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name, purpose=GoldenDataset.Purpose.GOLDEN).order_by("-version").first()


def dataset_version(name: str, version: int) -> GoldenDataset | None:
    return GoldenDataset.objects.filter(name=name, version=version, purpose=GoldenDataset.Purpose.GOLDEN).first()


def dataset_list() -> QuerySet[GoldenDataset]:
    return GoldenDataset.objects.all()


def artifact_queue_position(artifact: Artifact) -> int | None:
    """1 for the next run a worker will take; None when nothing of the artifact waits."""
    first_waiting = artifact.runs.filter(status__in=EvalRun.WAITING).order_by("created_at", "id").first()
    if first_waiting is None:
        return None
    ahead = EvalRun.objects.filter(status__in=EvalRun.WAITING, queue=first_waiting.queue, id__lt=first_waiting.id)
    return ahead.count() + 1


def thresholds_in_force(*, family: ModelFamily, metric: str, dataset_name: str) -> list[Threshold]:
    in_force = Threshold.objects.filter(enabled=True, metric=metric, scope=Threshold.Scope.CANDIDATE)
    candidates = in_force.filter(family__in=[family.pk]) | in_force.filter(family__isnull=True)
    return [t for t in candidates.order_by("id") if t.dataset_name in ("", dataset_name)]


UNGATED = "ungated"


def verdict_gated(verdict) -> bool:
    """Whether any limit judged this verdict: a threshold in force, or the implicit k·σ band of past baselines.

    Takes a DriftVerdict or any row with its threshold_id, threshold_history_id and band_low.
    """
    return verdict.threshold_id is not None or verdict.threshold_history_id is not None or verdict.band_low is not None


def verdict_shown_outcome(verdict) -> str:
    """The outcome as pages, API readers and PR comments should read it: a green nothing judged is "ungated"."""
    if verdict.outcome == DriftVerdict.Outcome.GREEN and not verdict_gated(verdict):
        return UNGATED
    return verdict.outcome


# The verdict table, the focused metric, halt reasons and PR comments read red first, then amber.
SHOWN_OUTCOME_RANK = {"red": 0, "amber": 1, "incomparable": 2, "green": 3, UNGATED: 4}


def verdicts_worst_first(verdicts: Iterable[DriftVerdict]) -> list[DriftVerdict]:
    """Verdicts red first, then amber, incomparable, green and ungated; within one outcome the
    largest drop first (by the metric's own change), then by dataset and metric."""
    return sorted(
        verdicts,
        key=lambda v: (
            SHOWN_OUTCOME_RANK.get(verdict_shown_outcome(v), len(SHOWN_OUTCOME_RANK)),
            v.delta if v.delta is not None else np.inf,
            v.dataset_id,
            v.metric,
        ),
    )


def verdict_gated_comparable(verdict) -> bool:
    """A verdict a reviewer should open first: a limit judged it and it has a change to chart."""
    return verdict.delta is not None and verdict_shown_outcome(verdict) != UNGATED


def run_list() -> QuerySet[EvalRun]:
    return EvalRun.objects.select_related("artifact__family", "dataset")


# What judging cost

JUDGE_COUNTS = ("calls", "failures", "retries", "judge_errors", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class JudgeTotals:
    """The judge runs' `judging["stats"]` summed: judge calls, calls that failed past their retries,
    retries, judge errors (samples no valid reply judged), tokens, call seconds and the slowest call."""

    runs: int
    calls: int
    failures: int
    retries: int
    judge_errors: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    slowest: float | None

    @property
    def mean_latency(self) -> float | None:
        return self.seconds / self.calls if self.calls else None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _judge_stat(name: str) -> Cast:
    return Cast(KT(f"judging__stats__{name}"), FloatField())


def judge_totals(since: datetime.datetime | None = None) -> JudgeTotals:
    """What the judge runs finished since `since` (else ever) cost, summed in the database (one query)."""
    runs = EvalRun.objects.filter(kind__in=JUDGING_KINDS, judging__has_key="stats")
    if since is not None:
        runs = runs.filter(finished_at__gte=since)
    totals = runs.order_by().aggregate(
        runs=Count("id"),
        seconds=Sum(_judge_stat("seconds")),
        slowest=Max(_judge_stat("slowest")),
        **{name: Sum(_judge_stat(name)) for name in JUDGE_COUNTS},
    )
    return JudgeTotals(
        runs=totals["runs"],
        seconds=float(totals["seconds"] or 0.0),
        slowest=totals["slowest"],
        **{name: round(totals[name] or 0) for name in JUDGE_COUNTS},
    )


def drafting_totals(since: datetime.datetime | None = None) -> DraftStats:
    """What drafting greedy answers did over the runs finished since `since` (else ever), summed in the
    database (one query)."""
    runs = EvalRun.objects.filter(drafting__has_key="answers")
    if since is not None:
        runs = runs.filter(finished_at__gte=since)
    names = list(DraftStats().as_dict())
    totals = runs.order_by().aggregate(**{name: Sum(Cast(KT(f"drafting__{name}"), FloatField())) for name in names})
    return DraftStats(**{name: round(totals[name] or 0) for name in names})


def threshold_list() -> QuerySet[Threshold]:
    """Thresholds with their latest change annotated from the history, one query: the version (history
    id), who changed it, when and why."""
    history = Threshold.history.model.objects.filter(id=OuterRef("pk")).order_by("-history_id")
    return (
        Threshold.objects.select_related("family")
        .annotate(
            latest_version=Subquery(history.values("history_id")[:1]),
            changed_at=Subquery(history.values("history_date")[:1]),
            changed_by=Subquery(history.values("history_user__username")[:1]),
            change_reason=Subquery(history.values("history_change_reason")[:1]),
        )
        .order_by("family__slug", "metric", "id")
    )


Status = ExperimentRun.Status
SECONDS_PER_DAY = 86400.0


def _best_kept_runs() -> QuerySet[ExperimentRun]:
    """The outer experiment's kept runs, best first in its direction; ties go to the earlier run."""
    signed = Case(
        When(experiment__direction=Experiment.Direction.HIGHER, then=-F("objective_value")),
        default=F("objective_value"),
    )
    return (
        ExperimentRun.objects.filter(experiment=OuterRef("pk"), status=Status.KEEP, objective_value__isnull=False)
        .annotate(signed_value=signed)
        .order_by("signed_value", "sequence")
    )


def experiment_list() -> QuerySet[Experiment]:
    """Experiments annotated with everything experiment_summary() reads, in one query."""
    best = _best_kept_runs()
    moment = Coalesce("runs__finished_at", "runs__started_at")
    return Experiment.objects.annotate(
        run_count=Count("runs"),
        kept_count=Count("runs", filter=Q(runs__status=Status.KEEP)),
        discarded_count=Count("runs", filter=Q(runs__status=Status.DISCARD)),
        crashed_count=Count("runs", filter=Q(runs__status=Status.CRASH)),
        timed_run_count=Count("runs", filter=Q(runs__finished_at__isnull=False) | Q(runs__started_at__isnull=False)),
        first_run_at=Min(moment),
        last_run_at=Max(moment),
        best_value=Subquery(best.values("objective_value")[:1]),
        best_commit=Subquery(best.values("commit")[:1]),
        best_sequence=Subquery(best.values("sequence")[:1]),
    ).order_by("-created_at", "-id")


def runs_per_day_rate(
    *, timed_runs: int, first: datetime.datetime | None, last: datetime.datetime | None
) -> float | None:
    """Runs per day from the gaps between timestamped runs; None until two of them are apart in time."""
    if timed_runs < 2 or first is None or last is None or last <= first:
        return None
    return (timed_runs - 1) / ((last - first).total_seconds() / SECONDS_PER_DAY)


def experiment_summary(experiment: Experiment) -> dict:
    """The summary of an experiment that came from experiment_list()."""
    runs = experiment.run_count
    return {
        "runs": runs,
        "kept": experiment.kept_count,
        "discarded": experiment.discarded_count,
        "crashed": experiment.crashed_count,
        "keep_rate": experiment.kept_count / runs if runs else None,
        "best_value": experiment.best_value,
        "best_commit": experiment.best_commit,
        "best_sequence": experiment.best_sequence,
        "runs_per_day": runs_per_day_rate(
            timed_runs=experiment.timed_run_count, first=experiment.first_run_at, last=experiment.last_run_at
        ),
    }


def experiment_runs(experiment: Experiment) -> QuerySet[ExperimentRun]:
    return experiment.runs.select_related("artifact__family").order_by("sequence")


def experiment_first_valued_sequence(experiment: Experiment) -> int | None:
    """The first run with an objective value: the loop's baseline."""
    first = (
        experiment.runs.filter(objective_value__isnull=False).order_by("sequence").values_list("sequence", flat=True)
    )
    return first.first()


def evaluation_profile(family: ModelFamily) -> EvaluationProfile:
    """The family's evaluation settings: every reader goes through here. A family made without
    the pipeline has none yet and gets the defaults (unsaved)."""
    try:
        return family.evaluation
    except EvaluationProfile.DoesNotExist:
        return EvaluationProfile(family=family)


def baseline_for(artifact: Artifact) -> Artifact | None:
    baseline = registry_selectors.production_artifact(artifact.family)
    return None if baseline is None or baseline.pk == artifact.pk else baseline


def band_history(snapshot: MetricSnapshot, window: int) -> list[float]:
    """Values of the last `window` production baselines of the family on this dataset and metric."""
    promoted_ids = (
        PromotionEvent.objects.filter(
            artifact__family_id=snapshot.artifact.family_id,
            action__in=[PromotionEvent.Action.PROMOTE, PromotionEvent.Action.BASELINE],
        )
        .exclude(artifact_id=snapshot.artifact_id)
        .values("artifact_id")
    )
    history = (
        MetricSnapshot.objects.filter(
            artifact_id__in=promoted_ids,
            dataset_id=snapshot.dataset_id,
            metric=snapshot.metric,
            complete=True,
            fingerprint=snapshot.fingerprint,
        )
        .order_by("-artifact__created_at")
        .values_list("value", flat=True)[:window]
    )
    return list(reversed(history))


def metric_label(metric: str) -> str:
    """How a metric is named on pages, in charts and in PR comments (its spec's label)."""
    spec = METRICS.get(metric)
    return spec.label if spec is not None else metric.replace("_", " ")


def change_text(metric: str, change: float | None) -> str:
    """A change of `metric` as shown: '+1.23 %' for a relative one, '+0.35' in the metric's units
    for an absolute one; '—' when there is none."""
    spec = METRICS.get(metric)
    if spec is None or not spec.absolute or change is None or not np.isfinite(change):
        return percent(change)
    return spec.format_change(change, signed=True)


def flips_text(comparison: dict | None) -> str:
    """The questions a 0/1 metric flipped, from a verdict's stored comparison: '12 right→wrong,
    4 wrong→right'; empty for other metrics."""
    flips = (comparison or {}).get("flips")
    if not flips:
        return ""
    return f"{flips['right_to_wrong']} right→wrong, {flips['wrong_to_right']} wrong→right"


def limit_text(metric: str, rule: str, limit: float | None) -> str:
    """A threshold's limit as it reads: '2 %' (relative rule, relative deltas), '0.5' (relative rule on a
    metric with absolute deltas: its own units), '3·σ' (band), '0.9' (absolute floor or ceiling)."""
    if limit is None:
        return "none"
    if rule == Threshold.Rule.BAND:
        return f"{limit:g}·σ"
    if rule == Threshold.Rule.RELATIVE:
        spec = METRICS.get(metric)
        return f"{100 * limit:g} %" if spec is None else drift.change_limit_text(spec, limit)
    return f"{limit:g}"


def snapshots_paired(candidate: MetricSnapshot, baseline: MetricSnapshot) -> tuple[np.ndarray, ...]:
    """Pair two snapshots' raw arrays sample by sample (a sampled candidate covers a subset of positions):
    (positions, candidate num, candidate den, baseline num, baseline den)."""
    cand_pos, cand_num, cand_den = candidate.arrays()
    base_pos, base_num, base_den = baseline.arrays()
    common, cand_idx, base_idx = np.intersect1d(cand_pos, base_pos, assume_unique=True, return_indices=True)
    return common, cand_num[cand_idx], cand_den[cand_idx], base_num[base_idx], base_den[base_idx]


@dataclass(frozen=True)
class PairedSamples:
    """Candidate and baseline per-sample values of one metric, aligned sample by sample."""

    metric: str
    direction: str
    positions: np.ndarray
    candidate: np.ndarray
    baseline: np.ndarray

    @property
    def deltas(self) -> np.ndarray:
        """Per-sample change in metric units, signed so that negative means worse."""
        sign = 1.0 if self.direction == "higher" else -1.0
        return sign * (self.candidate - self.baseline)

    @property
    def changes(self) -> np.ndarray:
        """Per-sample change as the metric measures it (`MetricSpec.change`: relative, or absolute in
        its units), negative means worse: how regressions are ranked. A relative change from a
        baseline of 0 is undefined (not finite); an absolute one is not, so a regression from 0 ranks."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(METRICS[self.metric].change(self.candidate, self.baseline), dtype=np.float64)


@dataclass(frozen=True)
class SampleRegression:
    position: int
    sample_id: str
    category: str
    text: str
    candidate: float
    baseline: float
    change: float
    metric: str
    # The change in the metric's units, negative means worse.
    difference: float

    @property
    def change_text(self) -> str:
        return change_text(self.metric, self.change)

    @property
    def difference_text(self) -> str:
        return f"{self.difference:+.4g}"

    @property
    def excerpt(self) -> str:
        return self.text if len(self.text) <= EXCERPT_CHARS else self.text[: EXCERPT_CHARS - 1] + "…"


def samples_paired(candidate: MetricSnapshot, baseline: MetricSnapshot) -> PairedSamples:
    """Per-sample values of both snapshots on their common samples (those with a finite value in both)."""
    spec = METRICS[candidate.metric]
    positions, cand_num, cand_den, base_num, base_den = snapshots_paired(candidate, baseline)
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = np.asarray(spec.value(cand_num, cand_den), dtype=np.float64)
        base = np.asarray(spec.value(base_num, base_den), dtype=np.float64)
    keep = np.isfinite(cand) & np.isfinite(base)
    return PairedSamples(candidate.metric, spec.direction, positions[keep], cand[keep], base[keep])


def _one_sample(metric: str) -> bool:
    spec = METRICS.get(metric)
    return bool(spec and spec.one_sample)


def verdict_samples_paired(verdict: DriftVerdict) -> PairedSamples | None:
    """The paired per-sample values behind one verdict (one query for both snapshots); None for a
    one-sample metric (a pairwise judge's preference is already the candidate against its baseline)."""
    if verdict.baseline_id is None or _one_sample(verdict.metric):
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate, baseline = snapshots.get(verdict.artifact_id), snapshots.get(verdict.baseline_id)
    if candidate is None or baseline is None or verdict.metric not in METRICS:
        return None
    return samples_paired(candidate, baseline)


def _ranked(pairs: PairedSamples, order: str) -> np.ndarray:
    """Indices into `pairs` in `order`: `regressed` by the metric's own change (the spec's relative or
    absolute), `absolute` by the change in the metric's units, `position` in dataset order; a sample
    whose change is not finite (relative to a baseline of 0) goes last."""
    if order == "position":
        return np.argsort(pairs.positions, kind="stable")
    key = pairs.deltas if order == "absolute" else pairs.changes
    return np.argsort(np.where(np.isfinite(key), key, np.inf), kind="stable")


def samples_regressed_most(
    pairs: PairedSamples, dataset_id: int, limit: int, order: str = "regressed"
) -> list[SampleRegression]:
    """The `limit` samples that got worse (in the metric's units), in `order` (see `_ranked`): by
    default the metric's own change, worst first; with their golden sample (one query)."""
    worse = pairs.deltas < 0
    worst = [int(i) for i in _ranked(pairs, order) if worse[i]][:limit]
    samples = GoldenSample.objects.filter(dataset_id=dataset_id, position__in=[int(pairs.positions[i]) for i in worst])
    by_position = {sample.position: sample for sample in samples}
    rows = []
    changes = pairs.changes
    for i in worst:
        position = int(pairs.positions[i])
        sample = by_position.get(position)
        rows.append(
            SampleRegression(
                position=position,
                sample_id=sample.sample_id if sample else str(position),
                category=sample.category if sample else "",
                text=(sample.text or asked_text(sample.prompt, sample.messages)) if sample else "",
                candidate=float(pairs.candidate[i]),
                baseline=float(pairs.baseline[i]),
                change=float(changes[i]),
                metric=pairs.metric,
                difference=float(pairs.deltas[i]),
            )
        )
    return rows


# Generated answers


@dataclass(frozen=True)
class Answer:
    """One generated answer as stored (model output: untrusted text); a drafted one also says whose
    answer drafted it and the token where it departs from that answer (None when they are equal)."""

    text: str
    tokens: int
    finish: str
    drafted_from: str = ""
    departs_at_token: int | None = None


@dataclass(frozen=True)
class JudgeReply:
    """One stored judge reply about an answer (judge output: untrusted text) and what it meant."""

    repeat: int
    reply: str
    value: float | None
    error: str


@dataclass(frozen=True)
class AnswerComparison:
    """One prompt with its reference and the candidate's and baseline's answers, and the metric's
    per-sample values on it (None where a side has none)."""

    position: int
    sample_id: str
    category: str
    prompt: str
    messages: list | None
    reference: str
    candidate: Answer | None
    baseline: Answer | None
    candidate_value: float | None
    baseline_value: float | None
    # The metric's own change (`MetricSpec.change`), negative means worse.
    change: float | None
    metric: str = ""
    # A judge metric: each side's stored judge replies about its answer, in repeat order (None where the
    # side was not judged with findable settings; the baseline's only when the same judge judged it).
    candidate_judged: tuple[JudgeReply, ...] | None = None
    baseline_judged: tuple[JudgeReply, ...] | None = None
    # The first token of the candidate's answer that differs from the baseline's, known when the
    # candidate's answer was drafted from the baseline's (None when they are equal or it is unknown).
    departs_at_token: int | None = None
    # A conversation: every user turn with both sides' answers (empty for a single prompt).
    turns: tuple["TurnComparison", ...] = ()

    @property
    def unchanged(self) -> bool | None:
        """Whether the candidate answered exactly as the baseline (None unless both answers are stored)."""
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate.text == self.baseline.text

    @property
    def asked(self) -> str:
        return asked_text(self.prompt, self.messages)

    @property
    def change_text(self) -> str:
        return change_text(self.metric, self.change)

    @property
    def relative_change(self) -> float | None:
        """The change when the metric measures it relative to the baseline, else None (API field)."""
        spec = METRICS.get(self.metric)
        return self.change if spec is not None and not spec.absolute else None


def asked_text(prompt: str, messages: list | None) -> str:
    """What a sample asks the model, as one text: the chat turns as `role: content` lines, else the prompt."""
    if messages:
        return "\n".join(f"{turn.get('role', '')}: {turn.get('content', '')}" for turn in messages)
    return prompt


def generation_metric(snapshot: MetricSnapshot | None) -> bool:
    """Whether a snapshot's metric was computed from generated answers (its fingerprint says how)."""
    return bool(snapshot and generation_settings_of(snapshot))


def generation_settings_of(snapshot: MetricSnapshot) -> tuple[str, str, int] | None:
    """(generation config sha256, chat-template sha256, engine version) the snapshot's answers came from."""
    settings = (snapshot.fingerprint or {}).get("settings") or {}
    if not isinstance(settings, dict) or not settings.get("generation"):
        return None
    return str(settings["generation"]), str(settings.get("chat_template", "")), int(settings.get("engine", 0))


JudgeFacts = tuple[str, JudgeSettings]


def judge_facts_of(snapshot: MetricSnapshot | None) -> JudgeFacts | None:
    """(judge identity, settings) a pointwise judge metric's snapshot was judged with, from its fingerprint;
    None for any other metric, or for another template version (its requests cannot be rebuilt)."""
    settings = ((snapshot.fingerprint or {}).get("settings") if snapshot else None) or {}
    if not isinstance(settings, dict) or not settings.get("judge") or settings.get("template") != TEMPLATE_VERSION:
        return None
    try:
        judging = JudgeSettings(
            mode=settings.get("mode", "pointwise"),
            repeats=int(settings.get("repeats") or 1),
            rubric=settings.get("rubric") or None,
        )
    except (ScoringError, TypeError, ValueError):
        return None
    return (str(settings["judge"]), judging) if judging.mode == "pointwise" else None


def _judge_replies(
    sides: list[tuple[JudgeFacts | None, dict[int, Answer]]], samples: dict[int, GoldenSample]
) -> list[dict[int, tuple[JudgeReply, ...]] | None]:
    """For each side (its judge facts, its answers by position): every answer's stored judge replies, found
    again by their judgement keys (one query for all sides); None for a side without judge facts."""
    wanted: list[tuple[int, int, JudgementKey]] = []
    for index, (facts, answers) in enumerate(sides):
        if facts is None:
            continue
        identity, settings = facts
        for position, answer in answers.items():
            sample = samples[position]
            asked = {"prompt": sample.prompt, "messages": sample.messages, "reference": sample.reference}
            item = items_from_samples([asked], [answer.text])[0]
            wanted.extend((index, position, key) for key in judgement_keys(identity, item, settings))
    found = {}
    if wanted:
        rows = Judgement.objects.filter(
            judge__in={key.judge for _, _, key in wanted},
            template_version=TEMPLATE_VERSION,
            request_sha256__in={key.request_sha256 for _, _, key in wanted},
        ).values_list(*JudgementKey._fields, "reply", "value", "error")
        found = {JudgementKey(*fields): (reply, value, error) for *fields, reply, value, error in rows}
    replies: list[dict[int, list[JudgeReply]] | None] = [
        None if facts is None else {position: [] for position in answers} for facts, answers in sides
    ]
    for index, position, key in wanted:
        if key in found:
            replies[index][position].append(JudgeReply(key.repeat, *found[key]))
    return [None if side is None else {p: tuple(r) for p, r in side.items()} for side in replies]


def _answers_of(snapshot: MetricSnapshot | None, prompt_hashes: dict[int, str]) -> dict[int, Answer]:
    """The snapshot's weights' stored answers to the given prompts, by dataset position (one query)."""
    settings = generation_settings_of(snapshot) if snapshot else None
    if settings is None or not prompt_hashes:
        return {}
    config, template, engine = settings
    rows = Generation.objects.filter(
        weights_sha256=snapshot_weights(snapshot),
        config_sha256=config,
        chat_template_sha256=template,
        engine_version=engine,
        prompt_sha256__in=set(prompt_hashes.values()),
    ).values_list("prompt_sha256", "text", "tokens", "finish", "drafted_from", "departs_at_token")
    by_hash = {digest: Answer(*fields) for digest, *fields in rows}
    return {position: by_hash[digest] for position, digest in prompt_hashes.items() if digest in by_hash}


def snapshot_weights(snapshot: MetricSnapshot) -> str:
    """The sha256 of the weights a snapshot scored."""
    return snapshot.fingerprint.get("weights_sha256") or snapshot.artifact.sha256


def departure(candidate: Answer | None, baseline: Answer | None, baseline_weights: str) -> int | None:
    """Where the candidate's answer departs from the baseline's: known when it was drafted from it."""
    if candidate is None or baseline is None or candidate.text == baseline.text:
        return None
    return candidate.departs_at_token if candidate.drafted_from == baseline_weights else None


@dataclass(frozen=True)
class AnswerDiff:
    """How many of a candidate's answers equal its baseline's, and where the others depart (median
    token, over the answers drafted from the baseline's; None when none was)."""

    compared: int
    unchanged: int
    median_departure: float | None

    @property
    def sentence(self) -> str:
        said = f"{self.unchanged} of {self.compared} answers unchanged"
        if self.unchanged == self.compared or self.median_departure is None:
            return said
        return f"{said}; the others depart at token {self.median_departure:g} on median"


def answer_diff(candidate: MetricSnapshot, baseline: MetricSnapshot | None) -> AnswerDiff | None:
    """The candidate's answers beside the baseline's, over every prompt both answered (three queries);
    None without a baseline or stored answers on both sides. Information, not a gate."""
    if baseline is None or not generation_metric(candidate):
        return None
    hashes = {}
    for position, prompt, messages in GoldenSample.objects.filter(dataset_id=candidate.dataset_id).values_list(
        "position", "prompt", "messages"
    ):
        if prompt or messages:
            hashes[position] = prompt_sha256(messages_of({"prompt": prompt, "messages": messages}))
    mine, theirs = _answers_of(candidate, hashes), _answers_of(baseline, hashes)
    both = [position for position in mine if position in theirs]
    if not both:
        return None
    unchanged = sum(mine[p].text == theirs[p].text for p in both)
    weights = snapshot_weights(baseline)
    departures = [d for p in both if (d := departure(mine[p], theirs[p], weights)) is not None]
    return AnswerDiff(len(both), unchanged, float(np.median(departures)) if departures else None)


def answer_order(candidate: MetricSnapshot, baseline: MetricSnapshot | None, order: str) -> list[int]:
    """Dataset positions of the candidate's samples: `regressed` puts the most regressed first by the
    metric's own change, `absolute` by the change in the metric's units (as `samples_regressed_most`
    ranks them; unpaired samples last), `position` keeps dataset order."""
    positions = candidate.arrays()[0]
    if order == "position" or baseline is None:
        return sorted(int(p) for p in positions)
    pairs = samples_paired(candidate, baseline)
    ranked = [int(pairs.positions[i]) for i in _ranked(pairs, order)]
    paired = set(ranked)
    return ranked + sorted(int(p) for p in positions if int(p) not in paired)


@dataclass(frozen=True)
class TurnComparison:
    """One user turn of a conversation, its reference, and each side's answer to it after that side's
    own earlier answers (None where none is stored)."""

    number: int
    user: str
    reference: str
    candidate: Answer | None
    baseline: Answer | None


def conversation_turns(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, samples: dict[int, GoldenSample]
) -> dict[int, tuple[TurnComparison, ...]]:
    """Every turn of the conversations among `samples` (by position) side by side: one query per turn
    depth and side, each side's later turns found under its own earlier answers."""
    talks = {position: sample.turns for position, sample in samples.items() if sample.turns}
    mine = _conversation_answers(candidate, talks)
    theirs = _conversation_answers(baseline, talks) if baseline else {}
    shown = {}
    for position, turns in talks.items():
        shown[position] = tuple(
            TurnComparison(
                number=number,
                user=turn["content"],
                reference=turn.get("reference", ""),
                candidate=_nth(mine.get(position), number - 1),
                baseline=_nth(theirs.get(position), number - 1),
            )
            for number, turn in enumerate(user_turns(turns), start=1)
        )
    return shown


def _conversation_answers(snapshot: MetricSnapshot, talks: dict[int, list]) -> dict[int, list[Answer]]:
    """The snapshot's weights' stored answers to each conversation's turns, up to the first missing one."""
    answers: dict[int, list[Answer]] = {position: [] for position in talks}
    for depth in range(max((len(user_turns(turns)) for turns in talks.values()), default=0)):
        hashes = {
            position: prompt_sha256(turn_messages(turns, [a.text for a in answers[position]])[depth])
            for position, turns in talks.items()
            if len(answers[position]) == depth and depth < len(user_turns(turns))
        }
        if not hashes:
            break
        for position, answer in _answers_of(snapshot, hashes).items():
            answers[position].append(answer)
    return answers


def _nth(answers: list[Answer] | None, index: int) -> Answer | None:
    return answers[index] if answers is not None and index < len(answers) else None


def answers_compared(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, positions: list[int]
) -> list[AnswerComparison]:
    """The prompts at `positions` (in that order) side by side: reference, baseline and candidate
    answers and the metric's values, and on a judge metric the judge's replies about them (three
    queries whatever the number of positions, four on a judge metric)."""
    samples = {
        sample.position: sample
        for sample in GoldenSample.objects.filter(dataset_id=candidate.dataset_id, position__in=positions)
    }
    hashes = {}
    for position, sample in samples.items():
        if sample.prompt or sample.messages:
            hashes[position] = prompt_sha256(messages_of({"prompt": sample.prompt, "messages": sample.messages}))
    candidate_answers, baseline_answers = _answers_of(candidate, hashes), _answers_of(baseline, hashes)
    conversations = conversation_turns(candidate, baseline, samples)
    judge, baseline_judge = judge_facts_of(candidate), judge_facts_of(baseline)
    same_judge = judge is not None and baseline_judge is not None and baseline_judge[0] == judge[0]
    candidate_judged, baseline_judged = _judge_replies(
        [(judge, candidate_answers), (baseline_judge if same_judge else None, baseline_answers)], samples
    )
    values = _per_position(candidate)
    base_values = _per_position(baseline) if baseline else {}
    spec = METRICS.get(candidate.metric)
    rows = []
    for position in positions:
        sample = samples.get(position)
        if sample is None:
            continue
        mine, theirs = values.get(position), base_values.get(position)
        change = None
        if mine is not None and theirs is not None and spec is not None and (spec.absolute or theirs != 0.0):
            change = float(spec.change(mine, theirs))
        rows.append(
            AnswerComparison(
                position=position,
                sample_id=sample.sample_id,
                category=sample.category,
                prompt=sample.prompt,
                messages=sample.messages or None,
                reference=sample.reference,
                candidate=candidate_answers.get(position),
                baseline=baseline_answers.get(position),
                candidate_value=mine,
                baseline_value=theirs,
                change=change,
                metric=candidate.metric,
                candidate_judged=_replies_at(candidate_judged, position),
                baseline_judged=_replies_at(baseline_judged, position),
                departs_at_token=departure(
                    candidate_answers.get(position),
                    baseline_answers.get(position),
                    snapshot_weights(baseline) if baseline else "",
                ),
                turns=conversations.get(position, ()),
            )
        )
    return rows


def _replies_at(replies: dict[int, tuple[JudgeReply, ...]] | None, position: int) -> tuple[JudgeReply, ...] | None:
    return None if replies is None else replies.get(position, ())


def answers_regressed_most(
    candidate: MetricSnapshot, baseline: MetricSnapshot, limit: int, order: str = "regressed"
) -> list[AnswerComparison]:
    """The `limit` prompts whose answers got worse on the snapshot's metric, side by side, in `order`."""
    worst = samples_regressed_most(samples_paired(candidate, baseline), candidate.dataset_id, limit, order)
    return answers_compared(candidate, baseline, [row.position for row in worst])


def verdict_answers_regressed_most(
    verdict: DriftVerdict, limit: int, order: str = "regressed"
) -> list[AnswerComparison] | None:
    """The answers behind a verdict on a generation metric that got most worse, side by side; None when
    the verdict's metric does not come from generated answers or has no baseline snapshot to pair with."""
    if verdict.baseline_id is None or _one_sample(verdict.metric):
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.select_related("artifact").filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate, baseline = snapshots.get(verdict.artifact_id), snapshots.get(verdict.baseline_id)
    if not generation_metric(candidate) or baseline is None or verdict.metric not in METRICS:
        return None
    return answers_regressed_most(candidate, baseline, limit, order)


def verdict_answer_diff(verdict: DriftVerdict) -> AnswerDiff | None:
    """How many of the candidate's answers behind a verdict on a generation metric equal the baseline's."""
    if verdict.baseline_id is None:
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.select_related("artifact")
        .defer("positions", "numerators", "denominators")
        .filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate = snapshots.get(verdict.artifact_id)
    return answer_diff(candidate, snapshots.get(verdict.baseline_id)) if candidate else None


ANSWER_ORDERS = ("regressed", "absolute", "position")
PREFERRED_ANSWER_METRIC = "answer_similarity"


class AnswerChoiceError(ValueError):
    """A dataset or metric the artifact has no generated answers for; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AnswerSource:
    """The snapshot whose answers are listed, and the one of its verdict's baseline (None without one)."""

    candidate: MetricSnapshot
    baseline: MetricSnapshot | None


def artifact_generation_snapshots(artifact: Artifact) -> list[MetricSnapshot]:
    """The artifact's snapshots of metrics computed from generated answers (arrays left out), by
    dataset name, newest dataset version first, then metric."""
    snapshots = (
        MetricSnapshot.objects.filter(artifact=artifact)
        .select_related("dataset")
        .defer("positions", "numerators", "denominators")
        .order_by("dataset__name", "-dataset__version", "metric")
    )
    return [snapshot for snapshot in snapshots if generation_metric(snapshot)]


def artifact_answer_source(artifact: Artifact, *, dataset: str = "", metric: str = "") -> AnswerSource | None:
    """Which answers of the artifact to list: on `dataset` (a name; default the first with answers, at
    its newest version scored) and `metric` (default answer_similarity, else the dataset's first
    generation metric), against its verdict's baseline. None when the artifact has no generated answers;
    AnswerChoiceError for a dataset or metric it has none on."""
    snapshots = artifact_generation_snapshots(artifact)
    if not snapshots:
        return None
    names = list(dict.fromkeys(snapshot.dataset.name for snapshot in snapshots))
    name = dataset or names[0]
    if name not in names:
        raise AnswerChoiceError(
            "dataset", f"No generated answers on {name!r}; datasets with answers: {', '.join(names)}."
        )
    newest = next(snapshot.dataset_id for snapshot in snapshots if snapshot.dataset.name == name)
    by_metric = {snapshot.metric: snapshot for snapshot in snapshots if snapshot.dataset_id == newest}
    chosen = metric or (PREFERRED_ANSWER_METRIC if PREFERRED_ANSWER_METRIC in by_metric else next(iter(by_metric)))
    if chosen not in by_metric:
        raise AnswerChoiceError(
            "metric", f"No generation metric {chosen!r} on {name}; metrics with answers: {', '.join(by_metric)}."
        )
    return _answer_source(by_metric[chosen])


def _answer_source(snapshot: MetricSnapshot) -> AnswerSource:
    """The snapshot with its arrays, and its verdict's baseline's snapshot of the same metric (two queries)."""
    baseline_id = (
        DriftVerdict.objects.filter(
            artifact_id=snapshot.artifact_id, dataset_id=snapshot.dataset_id, metric=snapshot.metric
        )
        .values_list("baseline_id", flat=True)
        .first()
    )
    loaded = {
        row.artifact_id: row
        for row in MetricSnapshot.objects.select_related("artifact", "dataset").filter(
            artifact_id__in=[snapshot.artifact_id, *([baseline_id] if baseline_id else [])],
            dataset_id=snapshot.dataset_id,
            metric=snapshot.metric,
        )
    }
    return AnswerSource(loaded[snapshot.artifact_id], loaded.get(baseline_id) if baseline_id else None)


def snapshot_per_sample_values(snapshot: MetricSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """(dataset positions, per-sample values) with samples whose denominator is zero left out."""
    positions, numerators, denominators = snapshot.arrays()
    spec = METRICS.get(snapshot.metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = per_sample_values(spec, numerators, denominators) if spec else numerators / denominators
    keep = np.isfinite(values)
    return positions[keep], np.asarray(values)[keep]


def _per_position(snapshot: MetricSnapshot) -> dict[int, float]:
    if snapshot.metric not in METRICS:
        return {}
    positions, values = snapshot_per_sample_values(snapshot)
    return {int(p): float(v) for p, v in zip(positions, values, strict=True)}


# Traffic windows

SURPRISING_TEXT_CHARS = 2000


def traffic_windows(family: ModelFamily) -> QuerySet[TrafficWindow]:
    """A family's windows in time order, with what the pages and the API show of each."""
    return TrafficWindow.objects.filter(family=family).select_related("dataset", "artifact", "promoted_to", "run")


def traffic_latest_scored(family: ModelFamily) -> TrafficWindow | None:
    """The family's most recent window with an outcome."""
    scored = TrafficWindow.objects.filter(family=family).exclude(outcome=TrafficWindow.Outcome.PENDING)
    return scored.select_related("artifact").order_by("-starts_at", "-number").first()


def traffic_window(family: ModelFamily, number: int) -> TrafficWindow:
    return traffic_windows(family).select_related("reference_dataset", "reference_window").get(number=number)


@dataclass(frozen=True)
class SurprisingSample:
    position: int
    sample_id: str
    category: str
    text: str
    value: float


def traffic_surprising(window: TrafficWindow, limit: int = 20) -> list[SurprisingSample]:
    """The window's samples the production model did worst on: the most surprising (highest bits per
    byte), or for a higher-is-better metric such as similarity the lowest values."""
    snapshot = MetricSnapshot.objects.filter(
        artifact_id=window.artifact_id, dataset_id=window.dataset_id, metric=window.metric
    ).first()
    if snapshot is None:
        return []
    positions, numerators, denominators = snapshot.arrays()
    values = numerators / denominators
    worse_first = values if METRICS[snapshot.metric].direction == "lower" else -values
    order = np.lexsort((positions, -worse_first))[:limit]
    wanted = [int(positions[i]) for i in order]
    samples = {s.position: s for s in GoldenSample.objects.filter(dataset_id=window.dataset_id, position__in=wanted)}
    return [
        SurprisingSample(
            position=p,
            sample_id=samples[p].sample_id,
            category=samples[p].category,
            text=samples[p].text[:SURPRISING_TEXT_CHARS],
            value=float(values[i]),
        )
        for p, i in zip(wanted, order, strict=True)
        if p in samples
    ]


def traffic_chart_data(windows: list[TrafficWindow]) -> dict:
    """What static/js/traffic.js draws: one point per scored window, and every window's category mix."""
    points = []
    for w in windows:
        s = w.statistics
        points.append(
            {
                "window": w.number,
                "starts_at": w.starts_at.isoformat(),
                "label": f"#{w.number} {w.starts_at:%Y-%m-%d %H:%M}",
                "outcome": w.outcome or "pending",
                "n": w.dataset.sample_count,
                **{
                    key: s.get(key)
                    for key in (
                        "mean",
                        "mean_ci_low",
                        "mean_ci_high",
                        "reference_mean",
                        "band_low",
                        "band_high",
                        "ks",
                        "wasserstein_sigma",
                        "psi",
                        "shift_sigma",
                    )
                },
                "mix": {
                    c or "uncategorised": n / max(w.dataset.sample_count, 1) for c, n in w.dataset.categories.items()
                },
            }
        )
    metric = next((w.metric for w in windows if w.metric), "bits_per_byte")
    return {"metric": metric, "metric_label": metric_label(metric), "windows": points}


def artifact_detail_queryset() -> QuerySet[Artifact]:
    """The registry's artifact detail with its snapshots (without the arrays) and verdicts."""
    return registry_selectors.artifact_detail_queryset().prefetch_related(
        Prefetch(
            "snapshots",
            queryset=MetricSnapshot.objects.select_related("dataset").defer("positions", "numerators", "denominators"),
        ),
        Prefetch("verdicts", queryset=DriftVerdict.objects.select_related("dataset", "threshold")),
        # The runs are listed and their usage priced (`cost`).
        Prefetch("runs", queryset=EvalRun.objects.select_related("dataset")),
    )
