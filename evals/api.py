from functools import partial

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, parsers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from driftboard.api import BaseViewSet, FiniteFloatField
from driftboard.api import ModelSerializer as FiniteModelSerializer
from driftboard.roles import IsAdminOrReadOnly, IsReviewer, IsReviewerOrReadOnly, can_administer, can_change_families
from evals import compare, costs, selectors, services
from evals.exports import EXPORT_FORMATS, samples_export_response
from evals.family_checks import family_settings_problem
from evals.models import (
    DriftVerdict,
    EvalRun,
    EvaluationProfile,
    Experiment,
    ExperimentRun,
    GoldenDataset,
    MetricSnapshot,
    Threshold,
    TrafficWindow,
)
from evals.scoring.errors import ScoringError
from evals.scoring.golden_io import GoldenFileError
from evals.scoring.scorers import DEFAULT_SCORERS, scorer_options_check, scorers_for
from evals.scoring.scorers.generated_answers import AnswerOptions
from evals.scoring.scorers.judge_score import judge_options
from evals.scoring.task_files import TaskFileError
from evals.services import budgets as budget_services
from evals.services import experiments as experiment_services
from evals.services import pipeline, profiles
from evals.services import traffic as traffic_services
from evals.services.datasets import DatasetChangeRefused
from evals.services.verdicts import json_safe
from registry import api as registry_api
from registry import selectors as registry_selectors
from registry.models import Artifact, ModelFamily


class EvaluatedArtifactSerializer(registry_api.ArtifactDetailSerializer):
    metrics = serializers.SerializerMethodField()
    verdicts = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField(
        help_text="What the verdict's runs used and cost, and the share the caches and sampling saved (0…1); "
        "null before any run finished."
    )

    class Meta(registry_api.ArtifactDetailSerializer.Meta):
        fields = registry_api.ArtifactDetailSerializer.Meta.fields + ["metrics", "verdicts", "cost"]
        read_only_fields = fields

    def get_metrics(self, artifact) -> list[dict]:
        return [snapshot_summary(s) for s in artifact.snapshots.all()]

    def get_verdicts(self, artifact) -> list[dict]:
        return [verdict_summary(v) for v in artifact.verdicts.all()]

    def get_cost(self, artifact) -> dict | None:
        cost = costs.artifact_cost(artifact)
        return cost.as_dict() if cost else None


class GenerationParams(serializers.Serializer):
    dataset = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=100,
        help_text="A golden dataset's name; by default the first the artifact has generated answers on.",
    )
    metric = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=50,
        help_text="A metric computed from the answers; by default answer_similarity, else the dataset's first.",
    )
    order = serializers.ChoiceField(
        choices=selectors.ANSWER_ORDERS,
        default="regressed",
        help_text="`regressed`: the most regressed against the verdict's baseline first, by the metric's own "
        "change (relative, or in its units when its deltas are absolute); `absolute`: by the change in the "
        "metric's units (dataset order for both when there is no baseline); `position`: dataset order.",
    )


class SampleExportParams(serializers.Serializer):
    def get_fields(self) -> dict:
        # `as`, not `format`: DRF reads `format` to pick a renderer.
        return {
            "as": serializers.ChoiceField(
                choices=EXPORT_FORMATS, default="jsonl", help_text="`jsonl` (one JSON object a line) or `csv`."
            )
        }


class GeneratedAnswerSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="Model output: untrusted text.")
    tokens = serializers.IntegerField()
    finish = serializers.CharField(help_text="Why the answer ended: `eos`, `stop` or `length`.")


class TurnSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="The user turn's number, from 1.")
    user = serializers.CharField(help_text="The user's message.")
    reference = serializers.CharField(help_text="The turn's reference; empty if none.")
    candidate = GeneratedAnswerSerializer(
        allow_null=True, help_text="This artifact's answer after its own earlier answers; null if none is stored."
    )
    baseline = GeneratedAnswerSerializer(
        allow_null=True, help_text="The baseline's answer after its own earlier answers; null if none is stored."
    )


class GenerationSerializer(serializers.Serializer):
    id = serializers.CharField(source="sample_id")
    position = serializers.IntegerField()
    category = serializers.CharField()
    prompt = serializers.CharField()
    messages = serializers.ListField(child=serializers.DictField(child=serializers.CharField()), allow_null=True)
    reference = serializers.CharField()
    candidate = GeneratedAnswerSerializer(allow_null=True, help_text="This artifact's answer; null if none is stored.")
    baseline = GeneratedAnswerSerializer(allow_null=True, help_text="The baseline's answer; null if none is stored.")
    candidate_value = serializers.FloatField(allow_null=True)
    baseline_value = serializers.FloatField(allow_null=True)
    relative_change = serializers.FloatField(
        allow_null=True, help_text="Negative means worse (0.1 = 10 % better); null for a metric with absolute deltas."
    )
    change = serializers.FloatField(
        allow_null=True,
        help_text="The metric's own change, negative means worse: relative, or in the metric's units when its "
        "deltas are absolute (see `delta`).",
    )
    unchanged = serializers.BooleanField(
        allow_null=True,
        help_text="Whether the candidate's answer is exactly the baseline's; null unless both are stored.",
    )
    departs_at_token = serializers.IntegerField(
        allow_null=True,
        help_text="The first token of the candidate's answer that differs from the baseline's, known when the "
        "answer was drafted from the baseline's; null when they are equal or it is unknown. Information only.",
    )
    turns = TurnSerializer(
        many=True, help_text="A conversation's user turns with both sides' answers, in order; empty for a prompt."
    )


GENERATION_PAGE = inline_serializer(
    "GenerationPage",
    {
        "metric": serializers.CharField(),
        "dataset": serializers.CharField(),
        "dataset_version": serializers.IntegerField(),
        "baseline": serializers.IntegerField(allow_null=True, help_text="The artifact id of the verdict's baseline."),
        "order": serializers.ChoiceField(choices=selectors.ANSWER_ORDERS, help_text="The order applied."),
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": GenerationSerializer(many=True),
    },
)
PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="A page number within the paginated result set."),
    OpenApiParameter("page_size", int, description="Prompts per page (at most 200)."),
]


class GenerationPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 200


class ArtifactViewSet(registry_api.ArtifactViewSet):
    """The registry's artifacts, with their scores; a submission queues its scoring."""

    detail_serializer_class = EvaluatedArtifactSerializer

    def detail_queryset(self):
        return selectors.artifact_detail_queryset()

    @extend_schema(
        parameters=[SampleExportParams],
        responses={(200, "application/x-ndjson"): str, (200, "text/csv"): str, 400: dict, 404: dict},
    )
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None):
        """Every sample the artifact was scored on, streamed as JSONL (default) or CSV (`?as=csv`): sample id,
        category, text or prompt, reference, both answers, and per metric the baseline's and the candidate's
        values and the metric's own change. The same rows as the review page's download."""
        artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
        self.check_object_permissions(request, artifact)
        params = SampleExportParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        return samples_export_response(artifact, params.validated_data["as"])

    @extend_schema(
        parameters=[GenerationParams, *PAGE_PARAMETERS], responses={200: GENERATION_PAGE, 400: dict, 404: dict}
    )
    @action(detail=True, methods=["get"])
    def generations(self, request, pk=None) -> Response:
        """The artifact's generated answers on one dataset and metric, beside its verdict's baseline's, with
        each prompt's reference and per-sample values; paged, the most regressed first by default."""
        artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
        self.check_object_permissions(request, artifact)
        params = GenerationParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        try:
            source = selectors.artifact_answer_source(
                artifact, dataset=params.validated_data["dataset"], metric=params.validated_data["metric"]
            )
        except selectors.AnswerChoiceError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        if source is None:
            raise NotFound(f"{artifact} has no generated answers: none of its metrics was computed from them.")
        order = params.validated_data["order"] if source.baseline else "position"
        paginator = GenerationPagination()
        positions = paginator.paginate_queryset(
            selectors.answer_order(source.candidate, source.baseline, order), request, view=self
        )
        rows = selectors.answers_compared(source.candidate, source.baseline, positions)
        page = paginator.get_paginated_response(GenerationSerializer(rows, many=True).data).data
        candidate = source.candidate
        return Response(
            {
                "metric": candidate.metric,
                "dataset": candidate.dataset.name,
                "dataset_version": candidate.dataset.version,
                "baseline": source.baseline.artifact_id if source.baseline else None,
                "order": order,
                **page,
            }
        )


class EvaluationSettingsSerializer(serializers.ModelSerializer):
    """A family's evaluation settings as the families API shows them, beside the family's own fields."""

    scorers = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    generation = serializers.JSONField(
        required=False,
        help_text="How answers are generated and checked: max_new_tokens, stop, chat_template, embedder, regex.",
    )

    judge = serializers.JSONField(
        required=False,
        help_text="The family's judge: url, model, repeats, rubric, concurrency, rate_per_second, timeout, local. "
        "The API key comes from DRIFTBOARD_JUDGE_API_KEY on the workers, never from here.",
    )

    scorer_options = serializers.JSONField(
        required=False,
        help_text='Option values per scorer, e.g. {"flagged-words": {"words": ["damn", "heck"]}}; each '
        "option is checked against the scorer's declaration.",
    )

    weekly_budget = FiniteFloatField(
        min_value=0,
        allow_null=True,
        required=False,
        help_text="Spend per week (Monday to Sunday, UTC) in DRIFTBOARD_PRICES' currency; null: no budget. Past "
        "DRIFTBOARD_BUDGET_SOFT_SHARE of it runs are sampled and non-gating runs wait for off-peak; past it new "
        "runs are deferred (budget) until staff lift it (POST …/budget-lift/).",
    )

    class Meta:
        model = EvaluationProfile
        fields = profiles.PROFILE_SETTINGS


def profile_value(name: str, family: ModelFamily) -> object:
    return getattr(selectors.evaluation_profile(family), name)


class FamilySerializer(registry_api.FamilySerializer):
    # Where the evaluation settings sit among the family's fields (the order the API always had).
    SETTINGS_AFTER = {
        "amber_check": ("max_length", "sampling", "sampling_min_samples", "sampling_chunk_size"),
        "created_at": ("scorers", "generation", "judge", "scorer_options", "weekly_budget"),
    }

    def get_fields(self) -> dict:
        """The family's fields with its evaluation settings, read from its profile (the defaults when it has
        none); written, they come back flat in `validated_data` and the view hands them to the profile."""
        settings_fields = EvaluationSettingsSerializer().get_fields()
        fields = {}
        for name, field in super().get_fields().items():
            fields[name] = field
            for setting in self.SETTINGS_AFTER.get(name, ()):
                fields[setting] = settings_fields[setting]
                fields[setting].get_attribute = partial(profile_value, setting)
        return fields

    def validate_judge(self, value: object) -> dict:
        if not isinstance(value, dict):
            raise ValidationError('an object of settings, e.g. {"url": "http://judge:8000/v1", "model": "qwen"}')
        try:
            judge_options(value, resolve=False)
        except ScoringError as exc:
            raise ValidationError(str(exc)) from exc
        if problem := family_settings_problem("judge", value):
            raise ValidationError(problem)
        return value

    def validate_generation(self, value: object) -> dict:
        if not isinstance(value, dict):
            raise ValidationError('an object of settings, e.g. {"max_new_tokens": 32, "stop": ["\\n"]}')
        try:
            AnswerOptions.from_settings(value)
        except ScoringError as exc:
            raise ValidationError(str(exc)) from exc
        if problem := family_settings_problem("generation", value):
            raise ValidationError(problem)
        return value

    def validate(self, data: dict) -> dict:
        data = super().validate(data)
        profile = selectors.evaluation_profile(self.instance) if self.instance else None
        names = data.get("scorers", profile.scorers if profile else [])
        kind = data.get("kind", self.instance.kind if self.instance else "")
        if names:
            try:
                scorers_for(kind, names)
            except ScoringError as exc:
                raise ValidationError({"scorers": str(exc)}) from exc
        options = data.get("scorer_options")
        if options is None and "scorers" in data and profile is not None:
            options = profile.scorer_options
        try:
            scorer_options_check(names or DEFAULT_SCORERS.get(kind, ()), options)
        except ScoringError as exc:
            raise ValidationError({"scorer_options": str(exc)}) from exc
        return data


class BudgetLiftSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)


class DatasetPinSerializer(serializers.Serializer):
    dataset = serializers.SlugField(max_length=100, help_text="A golden dataset the family gates on.")
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)


class FamilyViewSet(registry_api.FamilyViewSet):
    """Families; a new one gets the default thresholds of its kind, and `scorers` is checked by name."""

    serializer_class = FamilySerializer

    def get_queryset(self):
        return super().get_queryset().select_related("evaluation")

    def perform_update(self, serializer) -> None:
        data = serializer.validated_data
        profile_settings = {name: data.pop(name) for name in profiles.PROFILE_SETTINGS if name in data}
        with transaction.atomic():
            super().perform_update(serializer)
            if profile_settings:
                profiles.evaluation_profile_update(family=serializer.instance, **profile_settings)

    @extend_schema(request=DatasetPinSerializer, responses={200: FamilySerializer, 400: dict, 403: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def pin(self, request, slug=None) -> Response:
        """Move the golden version the family's runs score: staff or the family's owners only."""
        family = self.get_object()
        if not can_change_families(request.user, [family]):
            return Response(
                {"detail": f"Only staff or an owner of {family.slug} may move its pinned golden versions."},
                status=status.HTTP_403_FORBIDDEN,
            )
        params = DatasetPinSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        name, version = params.validated_data["dataset"], params.validated_data["version"]
        if name not in family.datasets:
            raise ValidationError({"dataset": f"{family.slug} does not gate on {name!r}."})
        if selectors.dataset_version(name, version) is None:
            raise ValidationError({"version": f"{name} has no golden version {version}."})
        pipeline.family_dataset_pin(
            family=family, dataset=name, version=version, reason=params.validated_data["reason"], actor=request.user
        )
        return Response(self.get_serializer(family).data)

    @extend_schema(
        request=BudgetLiftSerializer,
        responses={200: inline_serializer("BudgetLift", {"released_runs": serializers.IntegerField()}), 403: dict},
    )
    @action(detail=True, methods=["post"], url_path="budget-lift", permission_classes=[IsAuthenticated])
    def budget_lift(self, request, slug=None) -> Response:
        """Let the family's runs past its weekly budget until the week ends (staff only, with a reason): its
        deferred (budget) runs are dispatched."""
        family = self.get_object()
        if not can_administer(request.user):
            return Response({"detail": "Only staff may lift a family's budget."}, status=status.HTTP_403_FORBIDDEN)
        params = BudgetLiftSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        released = budget_services.family_budget_lift(
            family=family, actor=request.user, reason=params.validated_data["reason"]
        )
        return Response({"released_runs": released})


def snapshot_summary(snapshot: MetricSnapshot) -> dict:
    return {
        "metric": snapshot.metric,
        "dataset": snapshot.dataset.name,
        "dataset_version": snapshot.dataset.version,
        "value": snapshot.value,
        "n": snapshot.n,
        "std": snapshot.std,
        "ci_low": snapshot.ci_low,
        "ci_high": snapshot.ci_high,
        "complete": snapshot.complete,
        "scorer_version": snapshot.scorer_version,
        "per_category": snapshot.per_category,
    }


def verdict_summary(verdict: DriftVerdict) -> dict:
    return {
        "metric": verdict.metric,
        "dataset": verdict.dataset.name,
        "dataset_version": verdict.dataset.version,
        "baseline": verdict.baseline_id,
        "candidate_value": verdict.candidate_value,
        "baseline_value": verdict.baseline_value,
        "delta": verdict.delta,
        "ci_low": verdict.ci_low,
        "ci_high": verdict.ci_high,
        "p_value": verdict.p_value,
        "band_low": verdict.band_low,
        "band_high": verdict.band_high,
        "band_position": verdict.band_position,
        "ks": verdict.ks,
        "wasserstein": verdict.wasserstein,
        "outcome": verdict.outcome,
        "gated": selectors.verdict_gated(verdict),
        "threshold": verdict.threshold_id,
        "threshold_version": verdict.threshold_history_id,
        "reasons": verdict.reasons,
        "samples_used": verdict.samples_used,
        "samples_total": verdict.samples_total,
        "stopped_early": verdict.stopped_early,
    }


class DatasetSerializer(serializers.ModelSerializer):
    samples = serializers.IntegerField(source="sample_count")

    class Meta:
        model = GoldenDataset
        fields = [
            "id",
            "name",
            "version",
            "purpose",
            "sha256",
            "samples",
            "categories",
            "source_name",
            "recipe",
            "created_at",
        ]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    file = serializers.FileField()


class TaskUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="An lm-evaluation-harness task YAML whose data files lie in the import folders."
    )
    name = serializers.SlugField(max_length=100, required=False, help_text="The dataset's name (default: the task's).")

    def validate_file(self, upload):
        if upload.size > TASK_FILE_BYTES_MAX:
            raise serializers.ValidationError(f"a task file may be at most {TASK_FILE_BYTES_MAX // 1024} KiB")
        return upload


TASK_FILE_BYTES_MAX = 256 * 1024


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    serializer_class = DatasetSerializer
    parser_classes = [parsers.MultiPartParser]  # a file cannot travel url-encoded

    def get_queryset(self):
        return selectors.dataset_list()

    @extend_schema(request=DatasetUploadSerializer, responses={201: DatasetSerializer})
    def create(self, request) -> Response:
        params = DatasetUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["file"]
        try:
            dataset = services.dataset_import(
                name=params.validated_data["name"], filename=upload.name, source=upload, user=request.user
            )
        except GoldenFileError as exc:
            return Response({"detail": str(exc), "row": exc.row}, status=status.HTTP_400_BAD_REQUEST)
        except DatasetChangeRefused as exc:
            return Response(
                {"detail": str(exc), "families": [f.slug for f in exc.families]}, status=status.HTTP_403_FORBIDDEN
            )
        return Response(
            {**DatasetSerializer(dataset).data, "families": dataset_families(dataset.name)},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=TaskUploadSerializer, responses={201: DatasetSerializer})
    @action(detail=False, methods=["post"], url_path="import-task")
    def import_task(self, request) -> Response:
        """Freeze the documents of an uploaded lm-evaluation-harness task file as a golden dataset version."""
        params = TaskUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["file"]
        try:
            dataset = services.dataset_import_task_upload(
                filename=upload.name, source=upload, name=params.validated_data.get("name"), user=request.user
            )
        except (TaskFileError, GoldenFileError) as exc:
            return Response({"file": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        except DatasetChangeRefused as exc:
            return Response(
                {"detail": str(exc), "families": [f.slug for f in exc.families]}, status=status.HTTP_403_FORBIDDEN
            )
        return Response(
            {**DatasetSerializer(dataset).data, "families": dataset_families(dataset.name)},
            status=status.HTTP_201_CREATED,
        )


def dataset_families(name: str) -> list[dict]:
    """The families a new version affects; each keeps scoring the version it pins until that is moved."""
    return [
        {"family": f.slug, "pinned_version": f.dataset_pins.get(name)}
        for f in registry_selectors.families_gating_on(name)
    ]


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
            "scope",
            "family",
            "dataset_name",
            "metric",
            "rule",
            "limit",
            "band_window",
            "band_robust",
            "severity",
            "enabled",
            "rationale",
            "owner",
            "review_by",
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
        return f"{settings.DRIFTBOARD_PUBLIC_URL}{experiment.get_absolute_url()}"

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
        body = ExperimentSerializer(selectors.experiment_list().get(pk=experiment.pk)).data
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


# Traffic windows: /api/v1/families/{slug}/traffic/


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
