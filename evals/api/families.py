"""Families with their evaluation settings; moving a pinned golden version; lifting a weekly budget; how often
CI passed versions that then regressed (false confidence)."""

from functools import partial

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from driftboard.api import FiniteFloatField
from driftboard.roles import can_administer, can_change_families
from evals import selectors
from evals.family_checks import family_settings_problem
from evals.models import EvaluationProfile
from evals.scoring.errors import ScoringError
from evals.scoring.scorers import DEFAULT_SCORERS, scorer_options_check, scorers_for
from evals.scoring.scorers.generated_answers import AnswerOptions
from evals.scoring.scorers.judge_score import judge_options
from evals.services import pipeline, profiles
from registry import api as registry_api
from registry.models import ModelFamily


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
        "runs are deferred (budget) until the week ends, the budget is raised or staff lift it (POST …/budget-lift/).",
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


class FalseConfidenceVersionSerializer(serializers.Serializer):
    artifact = serializers.IntegerField(source="artifact.pk")
    version = serializers.IntegerField(source="artifact.version")
    commit = serializers.CharField(source="artifact.commit_sha")
    red = serializers.BooleanField(help_text="Driftboard flagged it red.")
    labelled_worse = serializers.BooleanField(
        help_text="Reviewers' pairwise labels prefer the baseline's answer more often than its own."
    )


class FalseConfidenceSerializer(serializers.Serializer):
    passed_ci = serializers.IntegerField(
        help_text="Versions whose commit's recorded CI checks (at least one) all passed."
    )
    regressed = serializers.IntegerField(help_text="Of those, the versions flagged red or labelled worse.")
    rate = serializers.FloatField(allow_null=True, help_text="regressed / passed_ci; null when none passed CI.")
    versions = FalseConfidenceVersionSerializer(many=True, help_text="The regressed versions, newest first.")


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

    @extend_schema(responses={200: FalseConfidenceSerializer, 404: dict})
    @action(detail=True, methods=["get"], url_path="false-confidence")
    def false_confidence(self, request, slug=None) -> Response:
        """Of the family's versions whose commit's CI passed (as the forge's check suite, workflow run and
        pipeline webhooks reported), those Driftboard flagged red or reviewers labelled worse than their baseline."""
        return Response(FalseConfidenceSerializer(selectors.false_confidence(self.get_object())).data)

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
        released = pipeline.family_budget_lift(
            family=family, actor=request.user, reason=params.validated_data["reason"]
        )
        return Response({"released_runs": released})
