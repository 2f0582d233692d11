"""JSON request bodies with a bounded nesting depth: a body nested deeper than
DRIFTBOARD_MAX_JSON_DEPTH is a 400 on every endpoint, before a serializer, a model field or a
template walks it recursively (and before the parser itself runs out of stack: also a 400)."""

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def json_depth(value: object) -> int:
    """How deeply objects and arrays nest in a parsed JSON value (a scalar is 0), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_deep_message() -> str:
    limit = settings.DRIFTBOARD_MAX_JSON_DEPTH
    return f"The JSON body is nested deeper than the {limit} levels allowed (DRIFTBOARD_MAX_JSON_DEPTH)."


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(too_deep_message()) from None
        if json_depth(data) > settings.DRIFTBOARD_MAX_JSON_DEPTH:
            raise ParseError(too_deep_message())
        return data
