"""Golden datasets: the list, uploading a version, importing an lm-evaluation-harness task."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from evals import selectors, services
from evals.models import GoldenDataset
from evals.scoring.golden_io import GoldenFileError
from evals.scoring.task_files import TaskFileError
from evals.services.datasets import DatasetChangeRefused
from registry import selectors as registry_selectors


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
