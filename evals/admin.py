from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from evals.models import (
    DriftVerdict,
    EvalRun,
    EvaluationProfile,
    Experiment,
    ExperimentRun,
    GoldenDataset,
    GoldenSample,
    MetricSnapshot,
    Threshold,
    TrafficWindow,
)
from evals.selectors import evaluation_profile
from evals.services.thresholds import threshold_save
from registry.admin import ModelFamilyAdmin
from registry.models import ModelFamily


class ThresholdAdminForm(forms.ModelForm):
    change_reason = forms.CharField(
        max_length=500,
        help_text="Why this change (or this new threshold): kept in its history, shown on its page.",
    )

    class Meta:
        model = Threshold
        fields = Threshold.SETTINGS


class EvaluationProfileInline(admin.StackedInline):
    model = EvaluationProfile
    can_delete = False  # a family always has its settings; emptying them means the defaults
    verbose_name_plural = "evaluation settings"


@admin.display(description="sampling")
def family_sampling(family: ModelFamily) -> str:
    return evaluation_profile(family).sampling


# The family's page edits its evaluation settings too: the registry's admin, with the settings evals owns.
admin.site.unregister(ModelFamily)


@admin.register(ModelFamily)
class EvaluatedFamilyAdmin(ModelFamilyAdmin):
    list_display = [*ModelFamilyAdmin.list_display[:-1], family_sampling, ModelFamilyAdmin.list_display[-1]]
    list_filter = [*ModelFamilyAdmin.list_filter, "evaluation__sampling"]
    list_select_related = ["evaluation"]
    inlines = [EvaluationProfileInline, *ModelFamilyAdmin.inlines]


@admin.register(GoldenDataset)
class GoldenDatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "sample_count", "sha256", "created_at"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["sha256", "sample_count", "categories"]


@admin.register(GoldenSample)
class GoldenSampleAdmin(admin.ModelAdmin):
    list_display = ["sample_id", "dataset", "category", "position"]
    list_filter = ["dataset", "category"]
    search_fields = ["sample_id", "text"]
    list_select_related = ["dataset"]


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "artifact",
        "dataset",
        "kind",
        "queue",
        "status",
        "attempts",
        "samples_done",
        "samples_total",
        "created_at",
    ]
    list_filter = ["status", "queue", "kind"]
    search_fields = ["artifact__commit_sha", "worker", "error"]
    list_select_related = ["artifact__family", "dataset"]
    raw_id_fields = ["artifact"]


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(admin.ModelAdmin):
    list_display = ["artifact", "dataset", "metric", "value", "n", "ci_low", "ci_high", "complete", "created_at"]
    list_filter = ["metric", "complete"]
    search_fields = ["artifact__commit_sha", "commit_sha"]
    list_select_related = ["artifact__family", "dataset"]
    exclude = ["positions", "numerators", "denominators"]


@admin.register(Threshold)
class ThresholdAdmin(SimpleHistoryAdmin):
    """Thresholds are living records: every save states why, and the reason is kept in the history."""

    form = ThresholdAdminForm
    list_display = [
        "metric",
        "scope",
        "family",
        "dataset_name",
        "rule",
        "limit",
        "severity",
        "enabled",
        "owner",
        "review_by",
    ]
    list_filter = ["scope", "rule", "severity", "enabled", "family"]
    search_fields = ["metric", "rationale", "owner"]
    history_list_display = ["limit", "severity", "enabled", "rationale"]

    def save_model(self, request, obj: Threshold, form: ThresholdAdminForm, change: bool) -> None:
        threshold_save(threshold=obj, user=request.user, reason=form.cleaned_data["change_reason"])


@admin.register(TrafficWindow)
class TrafficWindowAdmin(admin.ModelAdmin):
    """Windows are written by the import and the worker; the admin may pick a reference window."""

    list_display = ["family", "number", "starts_at", "ends_at", "outcome", "artifact", "scored_at"]
    list_filter = ["family", "outcome"]
    fields = ["family", "number", "dataset", "starts_at", "ends_at", "reference_window", "outcome", "reasons"]
    readonly_fields = ["family", "number", "dataset", "starts_at", "ends_at", "outcome", "reasons"]
    list_select_related = ["family", "artifact__family"]


@admin.register(DriftVerdict)
class DriftVerdictAdmin(admin.ModelAdmin):
    list_display = [
        "artifact",
        "dataset",
        "metric",
        "delta",
        "ci_low",
        "ci_high",
        "outcome",
        "stopped_early",
        "created_at",
    ]
    list_filter = ["outcome", "metric", "stopped_early"]
    search_fields = ["artifact__commit_sha"]
    list_select_related = ["artifact__family", "dataset"]


class ExperimentRunInline(admin.TabularInline):
    model = ExperimentRun
    extra = 0
    fields = ["sequence", "commit", "objective_value", "memory_gb", "status", "description"]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["slug", "objective", "direction", "time_budget_s", "hardware", "owner", "created_at"]
    search_fields = ["slug", "description", "owner"]
    inlines = [ExperimentRunInline]


@admin.register(ExperimentRun)
class ExperimentRunAdmin(admin.ModelAdmin):
    list_display = ["experiment", "sequence", "commit", "objective_value", "memory_gb", "status", "crash_reason"]
    list_filter = ["status", "experiment"]
    search_fields = ["commit", "description", "crash_reason"]
    list_select_related = ["experiment"]
