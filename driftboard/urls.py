from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import DefaultRouter

from driftboard.client_script import client_script
from driftboard.healthz import healthz
from evals import api as evals_api
from evals import label_api
from registry import alert_api, webhooks

router = DefaultRouter()
router.register("families", evals_api.FamilyViewSet, basename="api-family")
router.register(r"families/(?P<family_slug>[-\w]+)/traffic", evals_api.TrafficWindowViewSet, basename="api-traffic")
router.register("artifacts", evals_api.ArtifactViewSet, basename="api-artifact")
router.register("datasets", evals_api.DatasetViewSet, basename="api-dataset")
router.register("runs", evals_api.RunViewSet, basename="api-run")
router.register("thresholds", evals_api.ThresholdViewSet, basename="api-threshold")
router.register("experiments", evals_api.ExperimentViewSet, basename="experiment-api")
router.register("compare", evals_api.CompareViewSet, basename="api-compare")
router.register("alert-channels", alert_api.AlertChannelViewSet, basename="api-alert-channel")
router.register("labels", label_api.LabelViewSet, basename="api-label")
family_labels = label_api.FamilyLabelsViewSet

handler404 = "driftboard.errors.not_found"
handler500 = "driftboard.errors.server_error"

urlpatterns = [
    path("", include("driftboard.dashboard.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", include("driftboard.accounts.urls")),
    path("admin/", admin.site.urls),
    # Pages that do not extend base.html (admin, API docs) make the browser ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.ico", permanent=True)),
    path("healthz", healthz, name="healthz"),
    path("client.py", client_script, name="client-script"),
    path("api/v1/families/<slug:slug>/labels.csv", family_labels.as_view({"get": "labels_csv"}), name="api-labels-csv"),
    path(
        "api/v1/families/<slug:slug>/labels.jsonl",
        family_labels.as_view({"get": "labels_jsonl"}),
        name="api-labels-jsonl",
    ),
    path("api/v1/families/<slug:slug>/judges/", family_labels.as_view({"get": "judges"}), name="api-judges"),
    path("api/v1/", include(router.urls)),
    path("hooks/github/", webhooks.github_webhook, name="hook-github"),
    path("hooks/gitlab/", webhooks.gitlab_webhook, name="hook-gitlab"),
    # Like the API itself, its description is for signed-in users only (401 on the API, login page on the docs).
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[IsAuthenticated])),
        name="api-docs",
    ),
]
