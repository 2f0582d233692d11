"""Making, using and revoking API tokens."""

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from driftboard.accounts.models import LAST_USE_RESOLUTION, ApiToken

# Tells these keys from the 40-hex-digit keys of DRF's own tokens, which keep working beside them.
KEY_PREFIX = "dbt_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def api_token_create(*, user: AbstractBaseUser, name: str, scope: str) -> tuple[ApiToken, str]:
    """A new token and its key, which is not stored: the caller shows it once."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, scope=scope, key_hash=key_hash(key))
    return token, key


def api_token_revoke(*, user: AbstractBaseUser, pk: int) -> bool:
    """Delete one of the user's own tokens; False when the user has no such token."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=pk).delete()
    return bool(deleted)


def api_token_touch(*, token: ApiToken) -> None:
    """Record a use, at most once a minute: the conditional UPDATE lets one of concurrent requests write it."""
    now = timezone.now()
    if not token.use_is_due(now):
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USE_RESOLUTION)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
