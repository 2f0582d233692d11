"""Artifacts with their scores: the detail's metrics, verdicts and cost, the samples export, the answers."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from evals import costs, selectors
from evals.exports import EXPORT_FORMATS, samples_export_response
from evals.models import DriftVerdict, MetricSnapshot
from registry import api as registry_api
from registry.models import Artifact


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
    category = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=100,
        help_text="Only the samples of this category (exact name); by default every category.",
    )
    text = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=selectors.ANSWER_TEXT_MAX,
        help_text="Only the samples whose prompt, reference, text or either side's answer contains this text "
        "(case-insensitive); surrounding whitespace is ignored, and a blank text filters nothing.",
    )


class SampleExportParams(serializers.Serializer):
    def get_fields(self) -> dict:
        # `as`, not `format`: DRF reads `format` to pick a renderer.
        return {
            "as": serializers.ChoiceField(
                choices=EXPORT_FORMATS, default="jsonl", help_text="`jsonl` (one JSON object a line) or `csv`."
            ),
            "against": serializers.IntegerField(
                required=False,
                min_value=1,
                max_value=2**63 - 1,
                help_text="Another artifact of the same family (its id) to take the baseline values and answers "
                "from, as the compare page does; by default each verdict's baseline.",
            ),
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


class JudgeReplySerializer(serializers.Serializer):
    repeat = serializers.IntegerField(help_text="Which repeat of the judgement (0 first).")
    reply = serializers.CharField(help_text="The judge's reply as stored: judge output, untrusted text.")
    value = serializers.FloatField(
        allow_null=True,
        help_text="What the reply meant: a rating (a local judge's probability-weighted mean rating) or a "
        "preference; null when the reply could not be read.",
    )
    error = serializers.CharField(help_text="Why the reply could not be read; empty when it could.")


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
    candidate_judged = JudgeReplySerializer(
        many=True,
        allow_null=True,
        help_text="On a judge metric, the judge's stored replies about this artifact's answer (a conversation's: "
        "about the whole of it), one per repeat; null on other metrics.",
    )
    baseline_judged = JudgeReplySerializer(
        many=True,
        allow_null=True,
        help_text="The same judge's replies about the baseline's answer; null when another judge or none judged it.",
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
        values and the metric's own change, against each verdict's baseline or another version (`against`). The
        same rows as the review and compare pages' downloads."""
        artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
        self.check_object_permissions(request, artifact)
        params = SampleExportParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        against = None
        if "against" in params.validated_data:
            against = Artifact.objects.filter(pk=params.validated_data["against"], family_id=artifact.family_id).first()
            if against is None:
                raise ValidationError(
                    {"against": [f"No artifact {params.validated_data['against']} in {artifact.family}."]}
                )
        return samples_export_response(artifact, params.validated_data["as"], against)

    @extend_schema(
        parameters=[GenerationParams, *PAGE_PARAMETERS], responses={200: GENERATION_PAGE, 400: dict, 404: dict}
    )
    @action(detail=True, methods=["get"])
    def generations(self, request, pk=None) -> Response:
        """The artifact's generated answers on one dataset and metric, beside its verdict's baseline's, with
        each prompt's reference and per-sample values; paged, the most regressed first by default, optionally
        only one category's and those containing a text. The answers explorer's rows."""
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
        ranked = selectors.answer_positions(
            source.candidate,
            source.baseline,
            order,
            category=params.validated_data["category"],
            text=params.validated_data["text"],
        )
        positions = paginator.paginate_queryset(ranked, request, view=self)
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
