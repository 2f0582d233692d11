"""The API's kernel: the base viewset every API viewset builds on (authentication, pagination,
read/write rules), the serializer base and fields the apps' serializers share, and `holds_nul`.

Who may write what is decided by the role permissions in driftboard/roles.py. Numbers that come in
are finite: `FiniteFloatField` (and `ModelSerializer`, which uses it for every model FloatField)
refuses "Infinity", "NaN" and values past the float range (1e400) with a 400 naming the field.
`holds_nul` finds the NUL characters that PostgreSQL refuses inside JSON values, which DRF's
CharField already refuses in plain strings.
"""

import math

from django.db import models
from rest_framework import permissions, serializers, viewsets


class BaseViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated]


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"not_finite": "A finite number is required."}

    def to_internal_value(self, data) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("not_finite")
        return value


def holds_nul(value: object) -> bool:
    """True if a NUL character hides anywhere in a JSON value (keys included): jsonb cannot store it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_nul(item) for item in value)
    return False


class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.FloatField: FiniteFloatField,
    }
