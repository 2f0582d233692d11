from django.contrib import admin

from registry.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    Artifact,
    DatasetPinChange,
    ModelFamily,
    PromotionEvent,
    PullRequestLink,
    TelemetryTag,
    WebhookDelivery,
)


class DatasetPinChangeInline(admin.TabularInline):
    model = DatasetPinChange
    extra = 0
    readonly_fields = ["dataset", "from_version", "to_version", "reason", "actor", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelFamily)
class ModelFamilyAdmin(admin.ModelAdmin):
    list_display = ["slug", "kind", "base_branch", "promotion_policy", "created_at"]
    list_filter = ["kind", "promotion_policy"]
    search_fields = ["slug", "description"]
    filter_horizontal = ["owners"]
    readonly_fields = ["dataset_pins"]  # moved through the API's pin action, which records who and why
    inlines = [DatasetPinChangeInline]


class TelemetryTagInline(admin.TabularInline):
    model = TelemetryTag
    extra = 0


class PromotionEventInline(admin.TabularInline):
    model = PromotionEvent
    extra = 0
    readonly_fields = [
        "action",
        "from_stage",
        "to_stage",
        "from_status",
        "to_status",
        "reason",
        "automatic",
        "actor",
        "created_at",
    ]
    can_delete = False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "family",
        "version",
        "short_sha",
        "branch",
        "stage",
        "status",
        "drift_flag",
        "created_at",
    ]
    list_filter = ["family", "stage", "status", "drift_flag", "format"]
    search_fields = ["commit_sha", "sha256", "branch", "pr_url"]
    list_select_related = ["family"]
    readonly_fields = ["sha256", "size_bytes", "storage_path", "health", "created_at", "scored_at"]
    raw_id_fields = ["parent", "pull_request", "created_by"]
    inlines = [TelemetryTagInline, PromotionEventInline]


@admin.register(TelemetryTag)
class TelemetryTagAdmin(admin.ModelAdmin):
    list_display = ["artifact", "key", "value", "updated_at"]
    list_filter = ["key"]
    search_fields = ["key", "value", "artifact__commit_sha"]
    list_select_related = ["artifact__family"]


@admin.register(PromotionEvent)
class PromotionEventAdmin(admin.ModelAdmin):
    list_display = ["artifact", "action", "from_stage", "to_stage", "to_status", "automatic", "actor", "created_at"]
    list_filter = ["action", "automatic"]
    search_fields = ["artifact__commit_sha", "reason"]
    list_select_related = ["artifact__family", "actor"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["title", "severity", "artifact", "delivered_at", "delivery_attempts", "created_at"]
    list_filter = ["severity"]
    search_fields = ["title", "message"]
    list_select_related = ["artifact__family"]


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    fields = ["alert", "action", "status", "attempts", "error", "delivered_at", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-created_at"]


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "min_severity", "families", "active"]
    list_filter = ["kind", "min_severity", "active"]
    inlines = [AlertDeliveryInline]


@admin.register(PullRequestLink)
class PullRequestLinkAdmin(admin.ModelAdmin):
    list_display = ["__str__", "provider", "title", "state", "merged", "head_sha", "updated_at"]
    list_filter = ["provider", "state", "merged"]
    search_fields = ["repository", "title", "head_sha"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["provider", "delivery_id", "event", "received_at"]
    list_filter = ["provider", "event"]
    search_fields = ["delivery_id"]
