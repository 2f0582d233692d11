"""Thresholds: their configuration with its change history, and a backtest of one on past artifacts."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from driftboard.api import ModelSerializer as FiniteModelSerializer
from driftboard.roles import IsAdminOrReadOnly
from evals import selectors, services
from evals.models import Threshold
from registry.models import ModelFamily


class ThresholdSerializer(FiniteModelSerializer):
    family = serializers.SlugRelatedField(
        slug_field="slug", queryset=ModelFamily.objects.all(), allow_null=True, required=False
    )
    change_reason = serializers.CharField(
        write_only=True, required=False, max_length=500, help_text="Why this change; kept in the history."
    )
    overdue = serializers.BooleanField(read_only=True)
    version = serializers.SerializerMethodField()

    class Meta:
        model = Threshold
        fields = [
            "id",
            *Threshold.SETTINGS,
            "overdue",
            "version",
            "change_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_version(self, threshold: Threshold) -> int | None:
        if hasattr(threshold, "latest_version"):
            return threshold.latest_version
        latest = threshold.history.order_by("-history_id").first()
        return latest.history_id if latest else None

    def validate(self, data: dict) -> dict:
        instance = Threshold(**{**self._current(), **{k: v for k, v in data.items() if k != "change_reason"}})
        try:
            instance.clean()
        except Exception as exc:
            raise ValidationError(getattr(exc, "message_dict", str(exc))) from exc
        return data

    def _current(self) -> dict:
        if self.instance is None:
            return {}
        return {f: getattr(self.instance, f) for f in ("scope", "metric", "rule", "limit", "rationale", "severity")}


BACKTEST_RESPONSE = inline_serializer(
    "Backtest",
    {"counts": serializers.DictField(child=serializers.IntegerField()), "artifacts": serializers.ListField()},
)


class ThresholdViewSet(viewsets.ModelViewSet):
    serializer_class = ThresholdSerializer
    permission_classes = [IsAdminOrReadOnly]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.threshold_list()

    def perform_create(self, serializer) -> None:
        reason = serializer.validated_data.pop("change_reason", "")
        serializer.instance = services.threshold_save(
            threshold=Threshold(**serializer.validated_data), user=self.request.user, reason=reason or "Created"
        )

    def perform_update(self, serializer) -> None:
        reason = serializer.validated_data.pop("change_reason", "")
        for field, value in serializer.validated_data.items():
            setattr(serializer.instance, field, value)
        services.threshold_save(threshold=serializer.instance, user=self.request.user, reason=reason or "Updated")
        serializer.instance.__dict__.pop("latest_version", None)  # the annotation predates this change

    @extend_schema(request=ThresholdSerializer, responses=BACKTEST_RESPONSE)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])  # a what-if: it writes nothing
    def backtest(self, request, pk=None) -> Response:
        """What would this threshold (with any fields overridden in the body) have said of past artifacts?"""
        threshold = self.get_object()
        draft = ThresholdSerializer(threshold, data=request.data, partial=True)
        draft.is_valid(raise_exception=True)
        for field, value in draft.validated_data.items():
            if field != "change_reason":
                setattr(threshold, field, value)
        return Response(services.threshold_backtest(threshold=threshold))
