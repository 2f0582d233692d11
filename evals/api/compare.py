"""Any two versions on their stored per-sample arrays: GET /api/v1/compare/."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from evals import compare
from evals.services.verdicts import json_safe
from registry.models import Artifact


class CompareParams(serializers.Serializer):
    a = serializers.IntegerField(min_value=1, help_text="Artifact id of the reference version.")
    b = serializers.IntegerField(min_value=1, help_text="Artifact id of the version judged against a.")
    dataset = serializers.SlugField(required=False, default="", help_text="Only this golden dataset (name).")


def artifact_brief(artifact) -> dict:
    return {
        "id": artifact.pk,
        "family": artifact.family.slug,
        "version": artifact.version,
        "commit": artifact.commit_sha,
    }


def metric_comparison_summary(row: compare.MetricComparison) -> dict:
    summary = {
        "metric": row.metric,
        "dataset": row.dataset.name,
        "dataset_version": row.dataset.version,
        "a_value": row.a.value,
        "b_value": row.b.value,
        "comparable": row.comparison is not None,
        "reason": row.reason,
    }
    if row.comparison is None:
        return summary
    c = row.comparison
    return {
        **summary,
        "a_value": c.baseline,
        "b_value": c.candidate,
        "n": c.n,
        "delta": c.delta,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p_value": c.p_value,
        "ks": c.ks,
        "wasserstein": c.wasserstein,
        "per_category": json_safe(c.per_category),
    }


class CompareViewSet(BaseViewSet):
    """Any two versions on their stored per-sample arrays, with the statistics a verdict uses."""

    @extend_schema(
        operation_id="versions_compare", parameters=[CompareParams], responses={200: dict, 400: dict, 404: dict}
    )
    def list(self, request) -> Response:
        params = CompareParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        a, b = (
            get_object_or_404(Artifact.objects.select_related("family"), pk=params.validated_data[name])
            for name in ("a", "b")
        )
        result = compare.versions_compare(a=a, b=b, dataset_name=params.validated_data["dataset"])
        return Response(
            {
                "a": artifact_brief(a),
                "b": artifact_brief(b),
                "comparisons": [metric_comparison_summary(row) for row in result.metrics],
                "only_one": result.only_one,
            }
        )
