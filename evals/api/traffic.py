"""A family's traffic windows at /api/v1/families/{slug}/traffic/: upload a query log, list, read one."""

from drf_spectacular.utils import extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from driftboard.roles import IsReviewerOrReadOnly
from evals import selectors
from evals.models import TrafficWindow
from evals.scoring.golden_io import GoldenFileError
from evals.services import traffic as traffic_services
from registry.models import ModelFamily


def traffic_window_summary(window: TrafficWindow) -> dict:
    return {
        "window": window.number,
        "starts_at": window.starts_at,
        "ends_at": window.ends_at,
        "samples": window.dataset.sample_count,
        "sha256": window.dataset.sha256,
        "categories": window.dataset.categories,
        "artifact": window.artifact_id,
        "run": window.run_id,
        "run_status": window.run.status if window.run_id else None,
        "metric": window.metric,
        "outcome": window.outcome or "pending",
        "reasons": window.reasons,
        "statistics": {k: v for k, v in window.statistics.items() if k != "categories"},
        "promoted_to": str(window.promoted_to) if window.promoted_to_id else None,
    }


class TrafficUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    window = serializers.CharField(required=False, allow_blank=True, max_length=20)


class TrafficWindowViewSet(BaseViewSet):
    """A family's traffic windows: upload a query log, list the windows, read one in detail."""

    lookup_field = "number"
    lookup_value_regex = r"\d+"
    parser_classes = [parsers.MultiPartParser]
    serializer_class = TrafficUploadSerializer
    permission_classes = [IsReviewerOrReadOnly]

    def family(self) -> ModelFamily:
        return get_object_or_404(ModelFamily, slug=self.kwargs["family_slug"])

    @extend_schema(operation_id="traffic_windows_list", responses={200: dict, 404: dict})
    def list(self, request, family_slug: str) -> Response:
        windows = selectors.traffic_windows(self.family())
        return Response({"family": family_slug, "windows": [traffic_window_summary(w) for w in windows]})

    @extend_schema(operation_id="traffic_window_detail", responses={200: dict, 404: dict})
    def retrieve(self, request, family_slug: str, number: str) -> Response:
        try:
            window = selectors.traffic_window(self.family(), int(number))
        except TrafficWindow.DoesNotExist as exc:
            raise NotFound("No such traffic window.") from exc
        surprising = selectors.traffic_surprising(window)
        return Response(
            {
                **traffic_window_summary(window),
                "reference": str(window.reference_window or window.reference_dataset or ""),
                "category_shares": window.statistics.get("categories", []),
                "most_surprising": [vars(s) for s in surprising],
            }
        )

    @extend_schema(
        operation_id="traffic_windows_upload",
        request=TrafficUploadSerializer,
        responses={201: dict, 400: dict, 403: dict, 404: dict, 429: dict},
    )
    def create(self, request, family_slug: str) -> Response:
        family = self.family()
        params = TrafficUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["file"]
        try:
            windows = traffic_services.traffic_import(
                family=family,
                filename=upload.name,
                source=upload,
                window=params.validated_data.get("window") or None,
                user=request.user,
            )
        except GoldenFileError as exc:
            return Response({"detail": str(exc), "row": exc.row}, status=status.HTTP_400_BAD_REQUEST)
        except traffic_services.TrafficBacklogFull as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        return Response(
            {"family": family.slug, "windows": [traffic_window_summary(w) for w in windows]},
            status=status.HTTP_201_CREATED,
        )
