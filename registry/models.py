from django.conf import settings
from django.db import models
from django.urls import reverse


class ModelFamily(models.Model):
    """A line of weights that share an architecture, a base branch and a promotion policy."""

    class Kind(models.TextChoices):
        CAUSAL_LM = "causal-lm", "Causal language model"
        EMBEDDING = "embedding", "Sentence embedding model"

    class PromotionPolicy(models.TextChoices):
        AUTO = "auto", "Green promotes, amber holds, red halts"
        MANUAL = "manual", "Every candidate waits for a reviewer"

    class BaselinePolicy(models.TextChoices):
        FIRST_SCORED = "first-scored", "First scored artifact on the base branch becomes the baseline"
        MANUAL = "manual", "A reviewer promotes the first baseline"

    class AmberCheck(models.TextChoices):
        SUCCESS = "success", "Amber reports success with a warning"
        FAILURE = "failure", "Amber reports failure"

    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.TextField(blank=True)
    base_path = models.CharField(
        max_length=1000, blank=True, help_text="Server-side Hugging Face folder with config and tokenizer."
    )
    base_branch = models.CharField(max_length=200, default="main")
    datasets = models.JSONField(default=list, blank=True, help_text="Names of golden datasets scored.")
    dataset_pins = models.JSONField(
        default=dict,
        blank=True,
        help_text="Golden dataset name → the version its runs score: set at the first run, then moved only on purpose.",
    )
    promotion_policy = models.CharField(max_length=20, choices=PromotionPolicy.choices, default=PromotionPolicy.AUTO)
    baseline_policy = models.CharField(
        max_length=20, choices=BaselinePolicy.choices, default=BaselinePolicy.FIRST_SCORED
    )
    amber_check = models.CharField(max_length=10, choices=AmberCheck.choices, default=AmberCheck.SUCCESS)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owned_families")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "model families"

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("family-detail", args=[self.slug])


class DatasetPinChange(models.Model):
    """Who moved a family's pinned golden version, from what to what, and why."""

    family = models.ForeignKey(ModelFamily, on_delete=models.CASCADE, related_name="pin_changes")
    dataset = models.CharField(max_length=100)
    from_version = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the first pin.")
    to_version = models.PositiveIntegerField()
    reason = models.TextField(blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.family.slug} {self.dataset} v{self.from_version} → v{self.to_version}"


class PullRequestLink(models.Model):
    class Provider(models.TextChoices):
        GITHUB = "github", "GitHub"
        GITLAB = "gitlab", "GitLab"

    provider = models.CharField(max_length=10, choices=Provider.choices)
    repository = models.CharField(max_length=300, help_text="owner/name, or the GitLab project path.")
    project_id = models.CharField(max_length=50, blank=True, help_text="GitLab project id.")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=500, blank=True)
    head_sha = models.CharField(max_length=64, blank=True, db_index=True)
    base_ref = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=20, blank=True)
    merged = models.BooleanField(default=False)
    comment_id = models.CharField(max_length=50, blank=True, help_text="Our comment, edited in place.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["provider", "repository", "number"], name="unique_pull_request")]

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}"


class WebhookDelivery(models.Model):
    """Deliveries already handled, so a replayed delivery changes nothing."""

    provider = models.CharField(max_length=10, choices=PullRequestLink.Provider.choices)
    delivery_id = models.CharField(max_length=100)
    event = models.CharField(max_length=50)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "delivery_id"], name="unique_webhook_delivery")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event} {self.delivery_id}"


class CommitCheck(models.Model):
    """How one of a commit's own CI checks concluded — a GitHub check suite or workflow run, a GitLab
    pipeline — as the forge's webhooks reported it; a later report of the same check replaces it."""

    class Conclusion(models.TextChoices):
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        OTHER = "other", "Other (cancelled, skipped, neutral …)"

    provider = models.CharField(max_length=10, choices=PullRequestLink.Provider.choices)
    repository = models.CharField(max_length=300)
    commit_sha = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200, help_text="The check suite, workflow or pipeline.")
    conclusion = models.CharField(max_length=10, choices=Conclusion.choices)
    raw_conclusion = models.CharField(max_length=30, blank=True, help_text="As the forge worded it.")
    url = models.URLField(max_length=500, blank=True)
    reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When the forge says it concluded: an older report changes nothing."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "repository", "commit_sha", "name"], name="unique_commit_check")
        ]

    def __str__(self) -> str:
        return f"{self.repository}@{self.commit_sha[:8]} {self.name}: {self.conclusion}"


class Artifact(models.Model):
    """One weight version of a family."""

    class Stage(models.TextChoices):
        STAGING = "staging", "Staging"
        PRODUCTION = "production", "Production"
        ARCHIVED = "archived", "Archived"

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        QUEUED = "queued", "Queued"
        SCORING = "scoring", "Scoring"
        SCORED = "scored", "Scored"
        PROMOTED = "promoted", "Promoted"
        HELD = "held", "Held for review"
        HALTED = "halted", "Halted"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        HF_DIR = "hf-dir", "Hugging Face folder"
        SAFETENSORS = "safetensors", "safetensors state dict"
        BIN = "bin", "PyTorch state dict (weights only)"

    class DriftFlag(models.TextChoices):
        NONE = "", "Not scored"
        GREEN = "green", "Green"
        AMBER = "amber", "Amber"
        RED = "red", "Red"
        INCOMPARABLE = "incomparable", "Incomparable"

    family = models.ForeignKey(ModelFamily, on_delete=models.PROTECT, related_name="artifacts")
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    format = models.CharField(max_length=20, choices=Format.choices)
    storage_path = models.CharField(max_length=500, help_text="Relative to the artifact root.")
    original_name = models.CharField(max_length=300, blank=True)
    health = models.JSONField(default=dict, blank=True)
    commit_sha = models.CharField(max_length=64, db_index=True)
    branch = models.CharField(max_length=200, blank=True)
    pr_url = models.URLField(max_length=500, blank=True)
    pull_request = models.ForeignKey(
        PullRequestLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.STAGING)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERED)
    drift_flag = models.CharField(max_length=20, choices=DriftFlag.choices, default="", blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["family", "version"], name="unique_artifact_version"),
            models.UniqueConstraint(
                fields=["family", "sha256", "commit_sha"], name="unique_artifact_content_per_commit"
            ),
        ]
        indexes = [models.Index(fields=["family", "stage", "branch"]), models.Index(fields=["drift_flag"])]

    def __str__(self) -> str:
        return f"{self.family.slug} v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("artifact-detail", args=[self.pk])

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:8]


class TelemetryTag(models.Model):
    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=100)
    value = models.CharField(max_length=500)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["artifact", "key"], name="unique_tag_per_artifact")]
        indexes = [models.Index(fields=["key", "value"])]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class PromotionEvent(models.Model):
    class Action(models.TextChoices):
        REGISTER = "register", "Registered"
        PROMOTE = "promote", "Promoted"
        HOLD = "hold", "Held"
        HALT = "halt", "Halted"
        ARCHIVE = "archive", "Archived"
        BASELINE = "baseline", "Became the first baseline"
        FAIL = "fail", "Failed"

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20, choices=Action.choices)
    from_stage = models.CharField(max_length=20, blank=True)
    to_stage = models.CharField(max_length=20, blank=True)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    automatic = models.BooleanField(default=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.artifact} {self.action}"


class Alert(models.Model):
    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="alerts")
    severity = models.CharField(max_length=20, choices=Severity.choices)
    title = models.CharField(max_length=300)
    message = models.TextField()
    payload = models.JSONField(default=dict)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivery_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # An alert stays open (on Home and the Alerts page) until a reviewer acknowledges it.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledgement_note = models.TextField(blank=True)
    # What it is about, family and cause ("drift:bits_per_byte", "budget"): one alert of a key is open at
    # a time; channels hear of it again only when it changes, and of its resolution when the family recovers.
    dedup_key = models.CharField(max_length=300, blank=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["acknowledged_at", "-created_at"], name="alert_open_idx")]

    def __str__(self) -> str:
        return self.title


class AlertChannel(models.Model):
    """Where alerts go: a webhook, a Slack incoming webhook, a PagerDuty service, or e-mail addresses."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (JSON)"
        SLACK = "slack", "Slack incoming webhook"
        PAGERDUTY = "pagerduty", "PagerDuty Events API v2"
        EMAIL = "email", "E-mail"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    url = models.CharField(
        max_length=1000,
        blank=True,
        help_text="The webhook or Slack URL; for PagerDuty the Events API v2 endpoint (empty: PagerDuty's own).",
    )
    routing_key = models.CharField(max_length=100, blank=True, help_text="PagerDuty: the service's integration key.")
    to = models.CharField(max_length=1000, blank=True, help_text="E-mail: addresses, separated by commas.")
    families = models.JSONField(default=list, blank=True, help_text="Family slugs it hears of; empty means all.")
    min_severity = models.CharField(max_length=20, choices=Alert.Severity.choices, default=Alert.Severity.WARNING)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"


class AlertDelivery(models.Model):
    """One alert (or its resolution) sent to one channel: the delivery log."""

    class Action(models.TextChoices):
        TRIGGER = "trigger", "Trigger"
        RESOLVE = "resolve", "Resolve"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.TRIGGER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} of alert {self.alert_id} to {self.channel}"
