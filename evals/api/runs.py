"""Evaluation runs: the list, one run, and sending a failed run again."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from driftboard.roles import IsReviewer
from evals import selectors
from evals.models import EvalRun
from evals.services import pipeline


class RunSerializer(serializers.ModelSerializer):
    artifact = serializers.PrimaryKeyRelatedField(read_only=True)
    dataset = serializers.StringRelatedField()
    progress = serializers.FloatField()
    wait_seconds = serializers.FloatField(allow_null=True)

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "artifact",
            "dataset",
            "kind",
            "queue",
            "status",
            "attempts",
            "worker",
            "device",
            "created_at",
            "enqueued_at",
            "started_at",
            "finished_at",
            "samples_done",
            "samples_total",
            "progress",
            "tokens",
            "tokens_per_second",
            "forward_passes",
            "cached_samples",
            "wait_seconds",
            "sampling",
            "error",
        ]
        read_only_fields = fields


class RunRetrySerializer(serializers.Serializer):
    queue = serializers.CharField(
        max_length=20,
        required=False,
        help_text="`scoring` (the default), or the queue of a memory size class the error named (`scoring-80g`); "
        "a judge run goes back to `judge`, and only there.",
    )


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    serializer_class = RunSerializer

    def get_queryset(self):
        return selectors.run_list()

    @extend_schema(request=RunRetrySerializer, responses={202: RunSerializer, 400: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsReviewer])
    def retry(self, request, pk=None) -> Response:
        """Send a failed run again, for example to a bigger worker's queue after `needs ~X GiB`."""
        params = RunRetrySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            run = pipeline.eval_run_retry(run=self.get_object(), queue=params.validated_data.get("queue"))
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
