from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from driftboard import links
from driftboard.api import BaseViewSet, holds_nul
from driftboard.limits import PayloadTooLarge
from driftboard.parsers import JSONParser
from driftboard.roles import IsAdminOrReadOnly, IsReviewer
from registry import selectors, services
from registry.extensions import extension
from registry.models import Artifact, ModelFamily, TelemetryTag
from registry.storage import HashedUpload, HashingUploadHandler, UploadTooLarge, discard


class FamilySerializer(serializers.ModelSerializer):
    datasets = serializers.ListField(child=serializers.CharField(max_length=100), required=False)

    class Meta:
        model = ModelFamily
        fields = [
            "slug",
            "kind",
            "description",
            "base_path",
            "base_branch",
            "datasets",
            "dataset_pins",
            "promotion_policy",
            "baseline_policy",
            "amber_check",
            "created_at",
        ]
        read_only_fields = ["created_at", "dataset_pins"]

    def validate_base_path(self, value: str) -> str:
        if value:
            try:
                services.family_base_folder(ModelFamily(base_path=value))
            except services.RegistrationError as exc:
                raise ValidationError(str(exc)) from exc
        return value

    def validate(self, data: dict) -> dict:
        """Settings objects (generation, judge, scorer options) may not carry NUL: PostgreSQL refuses them."""
        names = {field.source_attrs[0]: name for name, field in self.fields.items() if field.source_attrs}
        for source, value in data.items():
            if holds_nul(value):
                raise ValidationError({names.get(source, source): "may not contain NUL characters (\\u0000)."})
        return data


class FamilyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, BaseViewSet
):
    serializer_class = FamilySerializer
    permission_classes = [IsAdminOrReadOnly]
    lookup_field = "slug"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.family_list()

    def perform_create(self, serializer) -> None:
        serializer.instance = extension().family_create(**serializer.validated_data)


def discard_unclaimed_uploads(request) -> None:
    """A refused request leaves no staged upload behind (a stored one has already moved away)."""
    for upload in request.FILES.values():
        if isinstance(upload, HashedUpload):
            discard(upload.staged_path)


class PullRequestSerializer(serializers.Serializer):
    provider = serializers.CharField()
    repository = serializers.CharField()
    number = serializers.IntegerField()
    url = serializers.CharField()
    state = serializers.CharField()


class ArtifactSerializer(serializers.ModelSerializer):
    family = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    url = serializers.SerializerMethodField()
    api_url = serializers.SerializerMethodField()
    commit = serializers.CharField(source="commit_sha")
    pr_url = serializers.CharField(read_only=True, help_text="The pull request's address; empty when none was given.")
    pull_request = PullRequestSerializer(allow_null=True)
    tags = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id",
            "url",
            "api_url",
            "family",
            "version",
            "sha256",
            "size_bytes",
            "format",
            "commit",
            "branch",
            "pr_url",
            "pull_request",
            "parent",
            "stage",
            "status",
            "drift_flag",
            "tags",
            "created_at",
            "scored_at",
        ]
        read_only_fields = fields

    def get_url(self, artifact: Artifact) -> str:
        return links.absolute_url(artifact.get_absolute_url(), self.context.get("request"))

    def get_api_url(self, artifact: Artifact) -> str:
        return links.absolute_url(f"/api/v1/artifacts/{artifact.pk}/", self.context.get("request"))

    def get_tags(self, artifact: Artifact) -> dict[str, str]:
        return {tag.key: tag.value for tag in artifact.tags.all()}


class ArtifactDetailSerializer(ArtifactSerializer):
    runs = serializers.SerializerMethodField()
    health = serializers.JSONField()

    class Meta(ArtifactSerializer.Meta):
        fields = ArtifactSerializer.Meta.fields + ["health", "runs"]
        read_only_fields = fields

    def get_runs(self, artifact: Artifact) -> list[dict]:
        return [
            {
                "id": r.pk,
                "dataset": str(r.dataset),
                "status": r.status,
                "kind": r.kind,
                "samples_done": r.samples_done,
                "samples_total": r.samples_total,
            }
            for r in artifact.runs.all()
        ]


class ArtifactCreateSerializer(serializers.Serializer):
    family = serializers.SlugRelatedField(slug_field="slug", queryset=ModelFamily.objects.all())
    commit = serializers.RegexField(
        r"^[0-9a-fA-F]{4,64}$", max_length=64, error_messages={"invalid": "commit must be a hexadecimal git sha."}
    )
    branch = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    pr_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    parent = serializers.PrimaryKeyRelatedField(queryset=Artifact.objects.all(), required=False, allow_null=True)
    weights = serializers.FileField(required=False)
    path = serializers.CharField(max_length=1000, required=False)

    def validate(self, data: dict) -> dict:
        if ("weights" in data) == ("path" in data):
            raise ValidationError("Send either a `weights` file (multipart) or a server-side `path`.")
        if data.get("parent") and data["parent"].family_id != data["family"].pk:
            raise ValidationError({"parent": "The parent must belong to the same family."})
        return data


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)


ARTIFACT_FILTER_PARAMS = [
    OpenApiParameter(name, str, required=False)
    for name in ("family", "stage", "status", "drift_flag", "commit", "branch")
]


class ArtifactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    parser_classes = [JSONParser, parsers.MultiPartParser]  # JSON for a server-side path, multipart for a file

    def initialize_request(self, request, *args, **kwargs):
        # Uploads stream straight into content-addressed storage, hashed on the way in.
        request.upload_handlers = [HashingUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self):
        if self.action == "list":
            return selectors.artifact_list(filters=self.request.query_params).prefetch_related(
                Prefetch("tags", queryset=TelemetryTag.objects.order_by("key"))
            )
        return self.detail_queryset()

    detail_serializer_class = ArtifactDetailSerializer

    def get_serializer_class(self):
        return ArtifactSerializer if self.action == "list" else self.detail_serializer_class

    def detail_queryset(self):
        return selectors.artifact_detail_queryset()

    @extend_schema(parameters=ARTIFACT_FILTER_PARAMS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ArtifactCreateSerializer, responses={202: ArtifactSerializer, 200: ArtifactSerializer})
    def create(self, request) -> Response:
        try:
            return self._register(request)
        except UploadTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        finally:
            discard_unclaimed_uploads(request)

    def _register(self, request) -> Response:
        params = ArtifactCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            registration = extension().artifact_submit(
                family=data["family"],
                commit_sha=data["commit"].lower(),
                branch=data["branch"],
                upload=data.get("weights"),
                path=data.get("path"),
                pr_url=data["pr_url"],
                parent=data.get("parent"),
                user=request.user,
            )
        except services.RegistrationError as exc:
            if exc.status_code == status.HTTP_413_REQUEST_ENTITY_TOO_LARGE:
                raise PayloadTooLarge(str(exc)) from exc
            raise ValidationError({"detail": str(exc)}) from exc
        artifact = self.detail_queryset().get(pk=registration.artifact.pk)
        body = ArtifactSerializer(artifact, context=self.get_serializer_context()).data
        body.update(extension().submission_extras(artifact))
        body["created"] = registration.created
        return Response(body, status=status.HTTP_202_ACCEPTED if registration.created else status.HTTP_200_OK)

    def _transition(self, request, pk, service) -> Response:
        params = ReasonSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        artifact = self.get_object()
        service(artifact=artifact, reason=params.validated_data["reason"], actor=request.user)
        artifact = self.detail_queryset().get(pk=pk)
        return Response(self.detail_serializer_class(artifact, context=self.get_serializer_context()).data)

    @extend_schema(request=ReasonSerializer, responses=ArtifactDetailSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsReviewer])
    def promote(self, request, pk=None) -> Response:
        return self._transition(request, pk, services.artifact_promote)

    @extend_schema(request=ReasonSerializer, responses=ArtifactDetailSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsReviewer])
    def halt(self, request, pk=None) -> Response:
        return self._transition(request, pk, services.artifact_halt)
