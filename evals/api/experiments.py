"""Experiments: their summaries, recording a finished run, importing a results.tsv."""

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from driftboard import links
from driftboard.api import BaseViewSet, FiniteFloatField
from evals import selectors
from evals.models import Experiment, ExperimentRun
from evals.services import experiments as experiment_services

SUMMARY_SCHEMA = inline_serializer(
    "ExperimentSummary",
    {
        "runs": serializers.IntegerField(),
        "kept": serializers.IntegerField(),
        "discarded": serializers.IntegerField(),
        "crashed": serializers.IntegerField(),
        "keep_rate": serializers.FloatField(allow_null=True),
        "best_value": serializers.FloatField(allow_null=True),
        "best_commit": serializers.CharField(allow_null=True),
        "best_sequence": serializers.IntegerField(allow_null=True),
        "runs_per_day": serializers.FloatField(allow_null=True),
    },
)


class ExperimentSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = [
            "slug",
            "url",
            "objective",
            "direction",
            "time_budget_s",
            "hardware",
            "owner",
            "branch_tag",
            "description",
            "created_at",
            "summary",
        ]
        read_only_fields = ["created_at"]

    def get_url(self, experiment: Experiment) -> str:
        return links.absolute_url(experiment.get_absolute_url(), self.context.get("request"))

    @extend_schema_field(SUMMARY_SCHEMA)
    def get_summary(self, experiment: Experiment) -> dict:
        return selectors.experiment_summary(experiment)


class ExperimentRunSerializer(serializers.ModelSerializer):
    artifact = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ExperimentRun
        fields = [
            "sequence",
            "commit",
            "status",
            "objective_value",
            "memory_gb",
            "description",
            "crash_reason",
            "started_at",
            "finished_at",
            "duration_s",
            "summary",
            "log_excerpt",
            "artifact",
            "created_at",
        ]
        read_only_fields = fields


class RunRecordSerializer(serializers.Serializer):
    """A finished run. The objective may be sent as `objective_value` or under its own name (`val_bpb`)."""

    commit = serializers.RegexField(experiment_services.COMMIT_PATTERN, max_length=64)
    status = serializers.ChoiceField(choices=ExperimentRun.Status.choices)
    objective_value = FiniteFloatField(required=False, allow_null=True)
    memory_gb = FiniteFloatField(required=False, allow_null=True, min_value=0)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    finished_at = serializers.DateTimeField(required=False, allow_null=True)
    log = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text="The raw train.py output; its summary block fills what is missing.",
    )

    def to_internal_value(self, data):
        objective = self.context["experiment"].objective
        if objective in data and "objective_value" not in data:
            data = {**{key: data[key] for key in data}, "objective_value": data[objective]}
        return super().to_internal_value(data)

    def validate(self, data: dict) -> dict:
        started, finished = data.get("started_at"), data.get("finished_at")
        if started and finished and finished < started:
            raise ValidationError({"finished_at": "A run cannot finish before it starts."})
        return data


class ResultsUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="An autoresearch results.tsv.")

    def validate_file(self, upload):
        if upload.size > experiment_services.RESULTS_MAX_BYTES:
            raise ValidationError(
                f"A results file may hold at most {experiment_services.RESULTS_MAX_BYTES // 1024**2} MiB."
            )
        return upload


IMPORT_RESPONSE = inline_serializer(
    "ResultsImport",
    {
        "created": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
        "malformed": serializers.ListField(
            child=inline_serializer(
                "MalformedLine",
                {
                    "line": serializers.IntegerField(),
                    "message": serializers.CharField(),
                },
            )
        ),
        "runs": ExperimentRunSerializer(many=True),
    },
)


def import_report_body(report: experiment_services.ImportReport) -> dict:
    return {
        "created": len(report.created),
        "unchanged": report.unchanged,
        "malformed": [{"line": m.line, "message": m.message} for m in report.malformed],
        "runs": ExperimentRunSerializer(report.created, many=True).data,
    }


class RunPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000


class ExperimentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    serializer_class = ExperimentSerializer
    lookup_field = "slug"

    def get_queryset(self):
        if self.action in ("runs", "import_results"):
            return Experiment.objects.all()
        return selectors.experiment_list()

    def create(self, request) -> Response:
        params = ExperimentSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        experiment = experiment_services.experiment_create(**params.validated_data)
        experiment = selectors.experiment_list().get(pk=experiment.pk)
        body = ExperimentSerializer(experiment, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=ExperimentRunSerializer(many=True))
    @extend_schema(methods=["POST"], request=RunRecordSerializer, responses={201: ExperimentRunSerializer})
    @action(detail=True, methods=["get", "post"])
    def runs(self, request, slug=None) -> Response:
        """GET: the runs in sequence order, paginated. POST: record a run that just finished."""
        experiment = self.get_object()
        if request.method == "POST":
            return self._record_run(request, experiment)
        paginator = RunPagination()
        page = paginator.paginate_queryset(selectors.experiment_runs(experiment), request, view=self)
        return paginator.get_paginated_response(ExperimentRunSerializer(page, many=True).data)

    def _record_run(self, request, experiment: Experiment) -> Response:
        params = RunRecordSerializer(data=request.data, context={"experiment": experiment})
        params.is_valid(raise_exception=True)
        try:
            run = experiment_services.experiment_run_record(experiment=experiment, **params.validated_data)
        except experiment_services.ExperimentRunError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(ExperimentRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ResultsUploadSerializer, responses=IMPORT_RESPONSE)
    @action(detail=True, methods=["post"], url_path="import", parser_classes=[parsers.MultiPartParser])
    def import_results(self, request, slug=None) -> Response:
        """Add the rows of a results.tsv not seen before; malformed lines come back with their numbers."""
        experiment = self.get_object()
        params = ResultsUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            report = experiment_services.results_import(
                experiment=experiment, data=params.validated_data["file"].read()
            )
        except experiment_services.ResultsFileError as exc:
            return Response({"detail": str(exc), "line": exc.line}, status=status.HTTP_400_BAD_REQUEST)
        return Response(import_report_body(report))
