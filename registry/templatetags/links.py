"""`{{ url|http_url }}`: the URL when it is http(s), else empty, so no `javascript:` href is ever rendered."""

from django import template

from registry.forges import is_http_url

register = template.Library()


@register.filter
def http_url(url: str) -> str:
    return url if isinstance(url, str) and is_http_url(url) else ""
