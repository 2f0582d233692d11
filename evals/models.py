import datetime

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from driftboard.queue_names import Queue
from evals.run_records import Judging, Sampling, Usage
from evals.scoring.traffic import TRAFFIC_METRICS
from registry.models import Artifact, ModelFamily


class EvaluationProfile(models.Model):
    """A family's evaluation settings, owned by evals: what is scored, how answers are generated and
    judged, how much of the golden set is read. The registry's family knows nothing of them."""

    class Sampling(models.TextChoices):
        OFF = "off", "Score the full golden set"
        SEQUENTIAL = "sequential", "Stop early once the verdict is clear"

    family = models.OneToOneField(ModelFamily, on_delete=models.CASCADE, related_name="evaluation")
    scorers = models.JSONField(
        default=list, blank=True, help_text="Names of the scorers run; empty means the defaults of the kind."
    )
    generation = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "How answers to prompts are generated and checked: max_new_tokens, stop, chat_template, "
            "embedder (a folder), regex. Empty means the defaults."
        ),
    )
    judge = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "The family's own judge for judge scorers: url, model, repeats, rubric, concurrency, "
            "rate_per_second, timeout, or local (a model folder). Empty means $DRIFTBOARD_JUDGE_URL / _MODEL."
        ),
    )
    max_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="Scoring context; empty means the model's own."
    )
    sampling = models.CharField(max_length=20, choices=Sampling.choices, default=Sampling.OFF)
    sampling_min_samples = models.PositiveIntegerField(default=100)
    sampling_chunk_size = models.PositiveIntegerField(default=50)
    scorer_options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Option values per scorer, e.g. {"flagged-words": {"words": ["damn"]}}; validated by the '
        "scorers' declarations.",
    )
    weekly_budget = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Spend per week (Monday to Sunday, UTC) in DRIFTBOARD_PRICES' currency; empty means no budget. "
        "Past DRIFTBOARD_BUDGET_SOFT_SHARE of it runs are sampled and non-gating runs wait for off-peak; past "
        "it, new runs are deferred until the week ends, the budget is raised or staff lift it.",
    )
    # A staff user let this week's runs past the budget: until when, who and why.
    budget_lifted_until = models.DateTimeField(null=True, blank=True)
    budget_lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    budget_lift_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"evaluation of {self.family}"


class GoldenDataset(models.Model):
    """A frozen, versioned set of samples. A new upload under the same name is a new version.

    A traffic window is stored the same way but marked `traffic`: it is never scored as a golden
    set; promoting it builds a new golden version from it.
    """

    class Purpose(models.TextChoices):
        GOLDEN = "golden", "Golden set"
        TRAFFIC = "traffic", "Traffic window"

    name = models.SlugField(max_length=100)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.GOLDEN)
    recipe = models.JSONField(
        default=dict, blank=True, help_text="How a golden subset was drawn (source, sizes, seed), to rebuild it."
    )
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    sample_count = models.PositiveIntegerField()
    categories = models.JSONField(default=dict, blank=True, help_text="Category → sample count.")
    source_name = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_dataset_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class GoldenSample(models.Model):
    dataset = models.ForeignKey(GoldenDataset, on_delete=models.CASCADE, related_name="samples")
    position = models.PositiveIntegerField()
    sample_id = models.CharField(max_length=200)
    text = models.TextField(blank=True, help_text="Scored for likelihood; empty for a prompt-only sample.")
    reference = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    prompt = models.TextField(blank=True, help_text="What the model answers (generation), if anything.")
    messages = models.JSONField(null=True, blank=True, help_text='Chat turns [{"role", "content"}] to answer, if any.')
    choices = models.JSONField(null=True, blank=True, help_text="A multiple-choice question's choices, if any.")
    answer = models.JSONField(null=True, blank=True, help_text="The gold choices' indices, with `choices`.")
    turns = models.JSONField(
        null=True, blank=True, help_text='A conversation answered turn by turn [{"role", "content", "reference"?}].'
    )
    sha256 = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sample_id"], name="unique_sample_id"),
            models.UniqueConstraint(fields=["dataset", "position"], name="unique_sample_position"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset}:{self.sample_id}"


class SampleResult(models.Model):
    """One scorer's per-sample values, reused whenever the same weights meet the same sample again.

    `scorer` is `name@version`; `values` maps the scorer's value names to numbers
    (`{"nll": …, "tokens": …, "bytes": …}` for causal NLL, `{"similarity": …}` for embeddings).
    """

    weights_sha256 = models.CharField(max_length=64)
    sample_sha256 = models.CharField(max_length=64)
    scorer = models.CharField(max_length=100)
    config_key = models.CharField(max_length=64)
    values = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["weights_sha256", "sample_sha256", "scorer", "config_key"], name="unique_sample_result"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scorer} {self.weights_sha256[:8]}:{self.sample_sha256[:8]}"


class Generation(models.Model):
    """One generated answer, reused whenever the same weights meet the same prompt with the same
    generation settings, chat template and engine (the scoring package's `GenerationKey`).

    `text` is model output: untrusted, escaped wherever it is shown.
    """

    weights_sha256 = models.CharField(max_length=64)
    prompt_sha256 = models.CharField(max_length=64)
    config_sha256 = models.CharField(max_length=64)
    chat_template_sha256 = models.CharField(max_length=64)
    engine_version = models.PositiveIntegerField()
    text = models.TextField()
    tokens = models.PositiveIntegerField()
    finish = models.CharField(max_length=16)
    # Drafted answers only: the weights whose stored answer drafted it, and the first token where it
    # departs from that answer (null when the texts are equal). Not part of the key.
    drafted_from = models.CharField(max_length=64, blank=True)
    departs_at_token = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["weights_sha256", "prompt_sha256", "config_sha256", "chat_template_sha256", "engine_version"],
                name="unique_generation",
            )
        ]

    def __str__(self) -> str:
        return f"answer {self.weights_sha256[:8]}:{self.prompt_sha256[:8]}"


class TextEmbedding(models.Model):
    """The unit-length embedding an embedder gave a text (the scoring package's `EmbeddingKey`): a
    reference, or an answer several versions share, is embedded once for every worker and process.

    `vector` holds float32 values, little-endian; the text itself is not kept, only its sha256.
    """

    weights_sha256 = models.CharField(max_length=64)
    max_length = models.PositiveIntegerField()
    dtype = models.CharField(max_length=16)
    device = models.CharField(max_length=16)
    text_sha256 = models.CharField(max_length=64)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["weights_sha256", "max_length", "dtype", "device", "text_sha256"],
                name="unique_text_embedding",
            )
        ]

    def __str__(self) -> str:
        return f"embedding {self.weights_sha256[:8]}:{self.text_sha256[:8]}"


class Judgement(models.Model):
    """One judge reply, reused whenever the same judge meets the same request (template, prompt,
    answers, order, repeat) again. `reply` is judge output: untrusted, escaped wherever it is shown.
    Failed calls are not stored: the next run asks again."""

    judge = models.CharField(max_length=500)
    template_version = models.PositiveIntegerField()
    request_sha256 = models.CharField(max_length=64)
    order = models.PositiveSmallIntegerField()
    repeat = models.PositiveSmallIntegerField()
    reply = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["judge", "template_version", "request_sha256", "order", "repeat"], name="unique_judgement"
            )
        ]

    def __str__(self) -> str:
        return f"judgement {self.request_sha256[:8]} by {self.judge}"


class EvalRun(models.Model):
    """One scoring job. The row is the source of truth; the Celery message only points at it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (not yet on the broker)"
        DEFERRED = "deferred", "Deferred (queue full)"
        BUDGET = "budget", "Deferred (budget)"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        FULL = "full", "Full golden set"
        SEQUENTIAL = "sequential", "Sequential sampling"
        COMPLETION = "completion", "Completion of a sampled run"
        TRAFFIC = "traffic", "Production model on a traffic window"
        JUDGE = "judge", "Judging of the answers"

    WAITING = (Status.PENDING, Status.DEFERRED, Status.BUDGET, Status.QUEUED)

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="runs")
    dataset = models.ForeignKey(GoldenDataset, on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.FULL)
    queue = models.CharField(max_length=20, choices=Queue.choices, default=Queue.SCORING)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=50, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    samples_done = models.PositiveIntegerField(default=0)
    samples_total = models.PositiveIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(null=True, blank=True)
    forward_passes = models.PositiveIntegerField(default=0)
    cached_samples = models.PositiveIntegerField(default=0)
    sampling = models.JSONField(default=dict, blank=True)
    judging = models.JSONField(
        default=dict,
        blank=True,
        help_text="A judge run: the facts of the model whose stored answers it judges (`model`) and, once "
        "done, what judging cost (`stats`: calls, failures, retries, seconds, tokens, judge errors).",
    )
    usage = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the finished run used and avoided (device, worker seconds, forward passes, tokens, "
        "judge tokens per model, samples cached or left out by sampling); priced by DRIFTBOARD_PRICES.",
    )
    drafting = models.JSONField(
        default=dict,
        blank=True,
        help_text="Greedy answers drafted from stored answers: answers, drafted / accepted / audited tokens, "
        "audited answers, audit mismatches, forward passes saved (empty when nothing was drafted).",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "queue", "created_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.artifact} on {self.dataset})"

    @property
    def sampling_record(self) -> Sampling:
        return Sampling.from_json(self.sampling)

    @property
    def judging_record(self) -> Judging:
        return Judging.from_json(self.judging)

    @property
    def usage_record(self) -> Usage:
        return Usage.from_json(self.usage)

    @property
    def progress(self) -> float:
        return self.samples_done / self.samples_total if self.samples_total else 0.0

    @property
    def wait_seconds(self) -> float | None:
        if not (self.enqueued_at and self.started_at):
            return None
        return (self.started_at - self.enqueued_at).total_seconds()


class MetricSnapshot(models.Model):
    """An artifact's score on one metric of one dataset, archived with the per-sample values.

    Each metric is a ratio of per-sample sums: value = transform(Σ numerators / Σ denominators).
    The arrays are float64 bytes aligned with `positions` (int32), the samples' dataset positions.
    """

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="snapshots")
    dataset = models.ForeignKey(GoldenDataset, on_delete=models.PROTECT, related_name="snapshots")
    run = models.ForeignKey(EvalRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots")
    metric = models.CharField(max_length=50)
    scorer_version = models.CharField(max_length=100)
    commit_sha = models.CharField(max_length=64)
    value = models.FloatField()
    n = models.PositiveIntegerField()
    std = models.FloatField()
    ci_low = models.FloatField()
    ci_high = models.FloatField()
    complete = models.BooleanField(default=True)
    positions = models.BinaryField()
    numerators = models.BinaryField()
    denominators = models.BinaryField()
    per_category = models.JSONField(default=dict, blank=True)
    fingerprint = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dataset", "metric"]
        constraints = [models.UniqueConstraint(fields=["artifact", "dataset", "metric"], name="unique_snapshot_metric")]

    def __str__(self) -> str:
        return f"{self.artifact} {self.metric}={self.value:.4f}"

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.frombuffer(bytes(self.positions), dtype=np.int32),
            np.frombuffer(bytes(self.numerators), dtype=np.float64),
            np.frombuffer(bytes(self.denominators), dtype=np.float64),
        )

    @property
    def stored_bytes(self) -> int:
        return len(self.positions) + len(self.numerators) + len(self.denominators)


def default_review_by() -> datetime.date:
    return timezone.now().date() + datetime.timedelta(days=settings.DRIFTBOARD_THRESHOLD_REVIEW_DAYS)


class Threshold(models.Model):
    """A living record: every change is kept with who made it and why."""

    # What an admin or an API client sets, in the order forms and the API show them.
    SETTINGS = (
        "scope",
        "family",
        "dataset_name",
        "metric",
        "rule",
        "limit",
        "band_window",
        "band_robust",
        "severity",
        "enabled",
        "rationale",
        "owner",
        "review_by",
    )

    class Rule(models.TextChoices):
        RELATIVE = "relative", "Relative degradation limit"
        BAND = "band", "k·σ band over past production baselines"
        ABSOLUTE = "absolute", "Absolute floor or ceiling"

    class Severity(models.TextChoices):
        WARN = "warn", "Warn (amber)"
        BLOCK = "block", "Block (red)"

    class Scope(models.TextChoices):
        CANDIDATE = "candidate", "Candidate against its baseline"
        TRAFFIC = "traffic", "Production model on traffic windows"

    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.CANDIDATE)
    family = models.ForeignKey(
        ModelFamily,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="thresholds",
        help_text="Empty applies to every family.",
    )
    dataset_name = models.CharField(max_length=100, blank=True, help_text="Empty applies to every dataset.")
    metric = models.CharField(max_length=50)
    rule = models.CharField(max_length=20, choices=Rule.choices, default=Rule.RELATIVE)
    limit = models.FloatField(help_text="Relative: 0.02 = 2 %. Absolute: the value. Band: k (σ multiples).")
    band_window = models.PositiveIntegerField(default=10, help_text="Band: how many past baselines.")
    band_robust = models.BooleanField(default=False, help_text="Band: median/MAD instead of mean/σ.")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.BLOCK)
    enabled = models.BooleanField(default=True)
    rationale = models.TextField()
    owner = models.CharField(max_length=200, blank=True)
    review_by = models.DateField(default=default_review_by)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["family__slug", "metric", "id"]

    def __str__(self) -> str:
        scope = self.family.slug if self.family_id else "all families"
        return f"{self.metric} {self.rule} {self.limit:g} ({scope})"

    def get_absolute_url(self) -> str:
        return reverse("threshold-detail", args=[self.pk])

    def clean(self) -> None:
        if not self.rationale.strip():
            raise ValidationError({"rationale": "Say why this threshold exists."})
        if self.rule == self.Rule.RELATIVE and not 0 <= self.limit < 1:
            raise ValidationError({"limit": "A relative limit is a fraction between 0 and 1 (0.02 = 2 %)."})
        if self.rule == self.Rule.BAND and self.limit <= 0:
            raise ValidationError({"limit": "A band limit is k, a positive number of σ."})
        if self.scope == self.Scope.TRAFFIC:
            self._clean_traffic()

    def _clean_traffic(self) -> None:
        if self.metric not in TRAFFIC_METRICS:
            raise ValidationError({"metric": f"A traffic threshold is on one of: {', '.join(TRAFFIC_METRICS)}."})
        if self.rule != self.Rule.ABSOLUTE or self.limit <= 0:
            raise ValidationError({"limit": "A traffic threshold is an absolute, positive effect size."})

    @property
    def overdue(self) -> bool:
        return self.review_by < timezone.now().date()


class DriftVerdict(models.Model):
    """Candidate against baseline on one metric of one dataset."""

    class Outcome(models.TextChoices):
        GREEN = "green", "Green"
        AMBER = "amber", "Amber"
        RED = "red", "Red"
        INCOMPARABLE = "incomparable", "Incomparable"

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="verdicts")
    baseline = models.ForeignKey(
        Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="baseline_for"
    )
    dataset = models.ForeignKey(GoldenDataset, on_delete=models.PROTECT, related_name="verdicts")
    metric = models.CharField(max_length=50)
    candidate_value = models.FloatField(null=True)
    baseline_value = models.FloatField(null=True)
    delta = models.FloatField(null=True, help_text="Relative; negative means worse.")
    ci_low = models.FloatField(null=True)
    ci_high = models.FloatField(null=True)
    p_value = models.FloatField(null=True)
    band_low = models.FloatField(null=True)
    band_high = models.FloatField(null=True)
    band_position = models.FloatField(null=True)
    ks = models.FloatField(null=True)
    wasserstein = models.FloatField(null=True)
    per_category = models.JSONField(default=dict, blank=True)
    threshold = models.ForeignKey(Threshold, null=True, blank=True, on_delete=models.SET_NULL)
    threshold_history_id = models.IntegerField(null=True, blank=True, help_text="Version of the threshold applied.")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reasons = models.JSONField(default=list, blank=True)
    comparison = models.JSONField(default=dict, blank=True, help_text="The full comparison, for backtests.")
    samples_used = models.PositiveIntegerField(default=0)
    samples_total = models.PositiveIntegerField(default=0)
    stopped_early = models.BooleanField(default=False)
    previous_outcome = models.CharField(max_length=20, blank=True, help_text="Set when a re-check changed it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dataset", "metric"]
        constraints = [models.UniqueConstraint(fields=["artifact", "dataset", "metric"], name="unique_verdict_metric")]

    def __str__(self) -> str:
        return f"{self.artifact} {self.metric}: {self.outcome}"

    @property
    def fraction_used(self) -> float:
        return self.samples_used / self.samples_total if self.samples_total else 1.0


class Experiment(models.Model):
    """An autoresearch-style loop: fixed-budget runs, each kept or discarded on one objective."""

    class Direction(models.TextChoices):
        LOWER = "lower", "Lower is better"
        HIGHER = "higher", "Higher is better"

    slug = models.SlugField(max_length=100, unique=True)
    objective = models.CharField(max_length=50, default="val_bpb")
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.LOWER)
    time_budget_s = models.PositiveIntegerField(default=300)
    hardware = models.CharField(max_length=200, blank=True)
    owner = models.CharField(max_length=200, blank=True)
    branch_tag = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("experiment-detail", args=[self.slug])


class ExperimentRun(models.Model):
    class Status(models.TextChoices):
        KEEP = "keep", "Keep"
        DISCARD = "discard", "Discard"
        CRASH = "crash", "Crash"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    sequence = models.PositiveIntegerField()
    commit = models.CharField(max_length=64)
    objective_value = models.FloatField(null=True, blank=True)
    memory_gb = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    description = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    log_excerpt = models.TextField(blank=True)
    crash_reason = models.CharField(max_length=500, blank=True)
    row_hash = models.CharField(max_length=64, blank=True, help_text="Identity of an imported results.tsv row.")
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "sequence"], name="unique_run_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.slug}#{self.sequence} {self.commit} {self.status}"


class TrafficWindow(models.Model):
    """A window of a family's production traffic and how the production model did on it."""

    class Outcome(models.TextChoices):
        PENDING = "", "Not scored yet"
        GREEN = "green", "Green"
        AMBER = "amber", "Amber"
        RED = "red", "Red"
        INCOMPARABLE = "incomparable", "Incomparable"

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE, related_name="traffic_windows")
    number = models.PositiveIntegerField(help_text="1, 2, … per family: the window's name in URLs.")
    dataset = models.OneToOneField(GoldenDataset, on_delete=models.PROTECT, related_name="traffic_window")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reference_window = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, help_text="Empty: the production golden set."
    )
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(EvalRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reference_dataset = models.ForeignKey(
        GoldenDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metric = models.CharField(max_length=50, blank=True)
    statistics = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.PENDING, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    promoted_to = models.ForeignKey(GoldenDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["family", "starts_at", "number"]
        constraints = [models.UniqueConstraint(fields=["family", "number"], name="unique_traffic_window_number")]

    def __str__(self) -> str:
        return f"{self.family.slug} traffic window {self.number}"

    def get_absolute_url(self) -> str:
        return reverse("family-traffic", args=[self.family.slug]) + f"?window={self.number}"


class Label(models.Model):
    """A reviewer's judgement of an answer: the truth judges are measured against.

    The answer is named by its stored `Generation` keys (and the baseline's weights for a pairwise
    label), so a label outlives a re-run that reproduces the same answer and never follows an answer
    generated otherwise. Pairwise labels are stored in candidate/baseline terms whatever order the
    reviewer saw (`shown_first`). Kept when the artifact is archived; every change is in `history`.
    """

    class Kind(models.TextChoices):
        POINTWISE = "pointwise", "Pointwise (good / bad)"
        PAIRWISE = "pairwise", "Pairwise (candidate / baseline / tie)"

    VALUES = {Kind.POINTWISE: ("good", "bad"), Kind.PAIRWISE: ("candidate", "baseline", "tie")}

    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels")
    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="labels")
    sample = models.ForeignKey(GoldenSample, on_delete=models.PROTECT, related_name="labels")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=10)
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Pointwise: optional 1–10.")
    note = models.TextField(blank=True)
    shown_first = models.CharField(max_length=10, blank=True, help_text="Pairwise: the answer shown first.")
    weights_sha256 = models.CharField(max_length=64)
    prompt_sha256 = models.CharField(max_length=64)
    config_sha256 = models.CharField(max_length=64)
    chat_template_sha256 = models.CharField(max_length=64)
    engine_version = models.PositiveIntegerField()
    baseline_weights_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["artifact", "sample__position", "reviewer_id"]
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "artifact", "sample", "kind"], name="unique_label_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value} on {self.artifact}:{self.sample.sample_id}"


class ReviewReservation(models.Model):
    """An item being shown to one reviewer: no other reviewer is shown it until `expires_at`. The
    pairwise order drawn for it is kept here, so the answer the reviewer calls "first" is known."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey(GoldenSample, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Label.Kind.choices)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    shown_first = models.CharField(max_length=10, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artifact", "sample", "kind", "reviewer"], name="unique_review_reservation")
        ]

    def __str__(self) -> str:
        return f"{self.kind} review of sample {self.sample_id} by {self.reviewer_id} until {self.expires_at}"


class JudgeTrust(models.Model):
    """A staff user's decision that a judge configuration may push verdicts past amber without
    enough agreeing labels, with the reason: an event, never edited."""

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE, related_name="trusted_judges")
    configuration = models.CharField(max_length=64, help_text="sha256 of judge, template, mode and rubric.")
    identity = models.CharField(max_length=500)
    mode = models.CharField(max_length=10)
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["family", "configuration"], name="unique_judge_trust")]

    def __str__(self) -> str:
        return f"{self.family.slug} trusts {self.identity} ({self.mode})"


class Acknowledgement(models.Model):
    """A reviewer's note that they have seen something listed under "Needs attention" that is not an alert:
    a failed run, an uncalibrated judge, a threshold overdue for review. It leaves the list; a new cause
    (another failed run, another configuration, a later review date) is listed again."""

    class Kind(models.TextChoices):
        RUN = "run", "Failed run"
        JUDGE = "judge", "Uncalibrated judge"
        THRESHOLD = "threshold", "Threshold overdue for review"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # What it is about: a run's id, "<family id>:<judge configuration sha256>", "<threshold id>:<review-by date>".
    key = models.CharField(max_length=200)
    title = models.CharField(max_length=500, help_text="What was acknowledged, as the list worded it.")
    note = models.TextField(blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="unique_acknowledgement")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} acknowledged: {self.title}"
