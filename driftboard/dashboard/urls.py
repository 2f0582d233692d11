"""The dashboard's pages and the metrics export."""

from django.urls import include, path

from driftboard.dashboard import labels, views
from driftboard.dashboard.prometheus import metrics_view

urlpatterns = [
    path("", views.home, name="home"),
    path("families/", views.family_list, name="family-list"),
    path("families/<slug:slug>/", views.family_detail, name="family-detail"),
    path("families/<slug:slug>/compare/", views.family_compare, name="family-compare"),
    path("families/<slug:slug>/traffic/", views.family_traffic, name="family-traffic"),
    path("families/<slug:slug>/review/", labels.family_review, name="family-review"),
    path("families/<slug:slug>/judges/", labels.family_judges, name="family-judges"),
    path("families/<slug:slug>/judges/trust/", labels.family_judge_trust, name="family-judge-trust"),
    path("families/<slug:slug>/traffic/<int:number>/promote/", views.traffic_promote, name="traffic-promote"),
    path("families/<slug:slug>/traffic/build-golden/", views.traffic_build_golden, name="traffic-build-golden"),
    path("artifacts/", views.artifact_list, name="artifact-list"),
    path("artifacts/compare/", views.artifact_compare_picked, name="artifact-compare-picked"),
    path("artifacts/<int:pk>/", views.artifact_detail, name="artifact-detail"),
    path("artifacts/<int:pk>/review/", labels.artifact_review, name="artifact-review"),
    path("artifacts/<int:pk>/answers/", views.artifact_answers, name="artifact-answers"),
    path("artifacts/<int:pk>/progress.json", views.artifact_progress, name="artifact-progress"),
    path(
        "artifacts/<int:pk>/samples.csv",
        views.artifact_samples_export,
        {"export_format": "csv"},
        name="artifact-samples-csv",
    ),
    path(
        "artifacts/<int:pk>/samples.jsonl",
        views.artifact_samples_export,
        {"export_format": "jsonl"},
        name="artifact-samples-jsonl",
    ),
    path("artifacts/<int:pk>/promote/", views.artifact_action, {"action": "promote"}, name="artifact-promote"),
    path("artifacts/<int:pk>/halt/", views.artifact_action, {"action": "halt"}, name="artifact-halt"),
    path("thresholds/", views.threshold_list, name="threshold-list"),
    path("thresholds/<int:pk>/", views.threshold_detail, name="threshold-detail"),
    path("queues/", views.queues, name="queues"),
    path("alerts/", views.alert_list, name="alert-list"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/attention/<str:kind>/acknowledge/", views.attention_acknowledge, name="attention-acknowledge"),
    path("experiments/", include("evals.urls")),
    path("metrics", metrics_view, name="metrics"),
]
