"""Reads of API tokens."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from driftboard.accounts.models import ApiToken


def api_tokens_of(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_by_key_hash(digest: str) -> ApiToken | None:
    return ApiToken.objects.select_related("user").filter(key_hash=digest).first()
