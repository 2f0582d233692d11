"""Alert channels over the API: admins create and edit them, signed-in users read them and their delivery
logs. A channel's URL and routing key are secrets (a Slack URL is its own credential): written, never shown
back; `target` names where it points without them."""

from urllib.parse import urlsplit

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from driftboard.api import BaseViewSet
from driftboard.roles import IsAdminOrReadOnly
from registry.alerting import channel_problem
from registry.models import AlertChannel, AlertDelivery, ModelFamily


class AlertChannelSerializer(serializers.ModelSerializer):
    url = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="webhook, slack: where to POST; pagerduty: the Events API v2 endpoint (empty: PagerDuty's).",
    )
    routing_key = serializers.CharField(
        max_length=100, required=False, allow_blank=True, write_only=True, help_text="pagerduty: the integration key."
    )
    families = serializers.ListField(
        child=serializers.SlugField(max_length=100), required=False, help_text="Family slugs; empty means all."
    )
    target = serializers.SerializerMethodField(help_text="Where it points, without its secrets.")

    class Meta:
        model = AlertChannel
        fields = ["id", "kind", "name", "url", "routing_key", "to", "target", "families", "min_severity", "active"]
        read_only_fields = ["id", "target"]

    def get_target(self, channel: AlertChannel) -> str:
        if channel.kind == AlertChannel.Kind.EMAIL:
            return channel.to
        host = urlsplit(channel.url).hostname or ("events.pagerduty.com" if channel.url == "" else "")
        if channel.kind == AlertChannel.Kind.PAGERDUTY:
            return f"{host} (routing key …{channel.routing_key[-4:]})"
        return host

    def validate_families(self, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ModelFamily.objects.filter(slug__in=value).values_list("slug", flat=True)))
        if unknown:
            raise ValidationError(f"no such family: {', '.join(unknown)}.")
        return value

    def validate(self, data: dict) -> dict:
        current = self.instance
        merged = {
            name: data.get(name, getattr(current, name, "") if current else "")
            for name in ("kind", "url", "routing_key", "to")
        }
        problem = channel_problem(**merged)
        if problem:
            raise ValidationError({problem[0]: [problem[1]]})
        return data


class DeliverySerializer(serializers.ModelSerializer):
    alert_title = serializers.CharField(source="alert.title", read_only=True)

    class Meta:
        model = AlertDelivery
        fields = ["id", "alert", "alert_title", "action", "status", "attempts", "error", "delivered_at", "created_at"]


class DeliveryPagination(PageNumberPagination):
    page_size = 50


class AlertChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    BaseViewSet,
):
    """Where alerts go: `webhook`, `slack`, `pagerduty` or `email`, for some families (or all) from a
    minimum severity."""

    serializer_class = AlertChannelSerializer
    permission_classes = [IsAdminOrReadOnly]
    queryset = AlertChannel.objects.all()

    @extend_schema(responses={200: DeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None) -> Response:
        """The channel's delivery log, newest first: each alert or resolution sent, its status and error."""
        channel = self.get_object()
        paginator = DeliveryPagination()
        page = paginator.paginate_queryset(channel.deliveries.select_related("alert"), request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)
