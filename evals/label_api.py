"""Reviewers' labels over the API: list and post one (`/api/v1/labels/`), post many made elsewhere
(`/api/v1/labels/bulk/`: JSON rows, or a CSV or JSONL file), a family's labels as CSV or JSONL, and
each of a family's judge configurations against the labels (`/api/v1/families/{slug}/judges/`).

Reviewers and staff label; readers read. A label's note is user text: the exports carry it as data.
"""

import csv
import io
import json
import math

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from driftboard.roles import IsReviewerOrReadOnly
from evals import label_selectors
from evals.models import Label
from evals.services import labels as label_services
from registry.models import Artifact, ModelFamily

EXPORT_FIELDS = ("family", "artifact", "version", "sample", "kind", "value", "rating", "note", "reviewer", "updated_at")
MAX_IMPORT_ROWS = 10_000
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class CanLabel(IsReviewerOrReadOnly):
    message = "Only reviewers and admins may label answers."


class LabelSerializer(serializers.ModelSerializer):
    artifact = serializers.PrimaryKeyRelatedField(queryset=Artifact.objects.all())
    sample = serializers.CharField(max_length=200, help_text="The golden sample's id.")
    kind = serializers.ChoiceField(choices=Label.Kind.choices)
    value = serializers.CharField(max_length=10, help_text="candidate / baseline / tie, or good / bad.")
    rating = serializers.IntegerField(min_value=1, max_value=10, required=False, allow_null=True)
    note = serializers.CharField(max_length=label_services.MAX_NOTE_CHARS, required=False, allow_blank=True)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Label
        fields = ("id", "artifact", "sample", "kind", "value", "rating", "note", "reviewer", "created_at", "updated_at")
        read_only_fields = ("id", "reviewer", "created_at", "updated_at")
        # One label per (reviewer, item, kind): a second post updates it, so no unique validator here.
        validators = []

    def to_representation(self, instance: Label) -> dict:
        data = super().to_representation(instance)
        data["sample"] = instance.sample.sample_id
        return data


def _input(data: dict) -> label_services.LabelInput:
    return label_services.LabelInput(
        artifact=data["artifact"],
        sample=data["sample"],
        kind=data["kind"],
        value=data["value"],
        rating=data.get("rating"),
        note=data.get("note", ""),
    )


class LabelPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class LabelViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, BaseViewSet):
    """Labels, filtered by `family` (slug), `artifact`, `reviewer` (username) and `kind`."""

    serializer_class = LabelSerializer
    pagination_class = LabelPagination
    permission_classes = [CanLabel]

    def get_queryset(self):
        labels = label_selectors.label_list().order_by("id")
        params = self.request.query_params
        filters = {
            "family": "artifact__family__slug",
            "artifact": "artifact_id",
            "reviewer": "reviewer__username",
            "kind": "kind",
        }
        for name, lookup in filters.items():
            if params.get(name):
                if name == "artifact" and not params[name].isdigit():
                    raise ValidationError({"artifact": "artifact is an artifact id (a whole number)."})
                labels = labels.filter(**{lookup: params[name]})
        return labels

    def create(self, request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            label, created = label_services.label_save(reviewer=request.user, given=_input(serializer.validated_data))
        except label_services.LabelRefused as exc:
            raise ValidationError({exc.field: str(exc)}) from exc
        return Response(
            self.get_serializer(label).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(request=LabelSerializer(many=True), responses={201: dict, 400: dict, 403: dict})
    @action(detail=False, methods=["post"], parser_classes=[JSONParser, MultiPartParser, FormParser])
    def bulk(self, request) -> Response:
        """Many labels at once, all or none: a JSON list, or a `file` (CSV with a header row, or JSONL);
        the errors are listed by row number."""
        rows = _rows_of(request)
        checked = []
        for row in rows:
            serializer = self.get_serializer(data=row)
            if serializer.is_valid():
                checked.append(_input(serializer.validated_data))
            else:
                checked.append({name: " ".join(map(str, problems)) for name, problems in serializer.errors.items()})
        errors = label_services.labels_import(reviewer=request.user, rows=checked)
        if errors:
            return Response({"detail": "No label was stored.", "rows": errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"stored": len(checked)}, status=status.HTTP_201_CREATED)


def _rows_of(request) -> list[dict]:
    upload = request.FILES.get("file")
    if upload is None:
        if not isinstance(request.data, list):
            raise ValidationError({"file": "Send a JSON list of labels, or a CSV or JSONL file as `file`."})
        rows = request.data
    else:
        if upload.size > MAX_IMPORT_BYTES:
            raise ValidationError({"file": f"The file must be at most {MAX_IMPORT_BYTES // (1024 * 1024)} MiB."})
        rows = _parse_file(upload.read(), upload.name or "")
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError({"file": f"At most {MAX_IMPORT_ROWS} labels at once, not {len(rows)}."})
    if not all(isinstance(row, dict) for row in rows):
        raise ValidationError({"file": "Every label must be an object."})
    return rows


def _parse_file(raw: bytes, name: str) -> list[dict]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError({"file": "The file is not UTF-8 text."}) from exc
    if name.lower().endswith(".csv"):
        return [
            {key: value for key, value in row.items() if value not in ("", None)}
            for row in csv.DictReader(io.StringIO(text))
        ]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValidationError({"file": f"Line {number} is not JSON: {exc.msg}."}) from exc
    return rows


def _export_rows(family: ModelFamily) -> list[dict]:
    return [
        {
            "family": family.slug,
            "artifact": label.artifact_id,
            "version": label.artifact.version,
            "sample": label.sample.sample_id,
            "kind": label.kind,
            "value": label.value,
            "rating": label.rating,
            "note": label.note,
            "reviewer": label.reviewer.username,
            "updated_at": label.updated_at.isoformat(),
        }
        for label in label_selectors.label_list().filter(artifact__family=family).order_by("id")
    ]


class FamilyLabelsViewSet(BaseViewSet):
    """A family's labels as files, and its judges against them (routed in driftboard/urls.py)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={(200, "text/csv"): str, 404: dict})
    def labels_csv(self, request, slug=None) -> HttpResponse:
        family = get_object_or_404(ModelFamily, slug=slug)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        writer.writerows(_export_rows(family))
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{family.slug}-labels.csv"'
        return response

    @extend_schema(responses={(200, "application/jsonl"): str, 404: dict})
    def labels_jsonl(self, request, slug=None) -> HttpResponse:
        family = get_object_or_404(ModelFamily, slug=slug)
        body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in _export_rows(family))
        response = HttpResponse(body, content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{family.slug}-labels.jsonl"'
        return response

    @extend_schema(responses={200: dict, 404: dict})
    def judges(self, request, slug=None) -> Response:
        family = get_object_or_404(ModelFamily, slug=slug)
        return Response({"judges": [judge_summary(a) for a in label_selectors.judge_agreements(family)]})


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def judge_summary(agreement: label_selectors.JudgeAgreement) -> dict:
    a = agreement.agreement
    return {
        "identity": agreement.configuration.identity,
        "configuration": agreement.configuration.key,
        "mode": agreement.configuration.mode,
        "rubric": agreement.configuration.rubric,
        "kappa": _number(a.kappa),
        "ci_low": _number(a.ci_low),
        "ci_high": _number(a.ci_high),
        "n": a.n,
        "agreement": _number(a.agreement),
        "calibrated": agreement.calibrated,
        "trusted": agreement.trusted is not None,
        "categories": list(a.categories),
        "confusion": a.confusion,
        "items": [
            {"artifact": item.artifact, "sample": item.sample, "human": item.human, "judge": item.judge}
            for item in agreement.items
        ],
    }
