import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

# A token's last use is written at most this often, so a busy CI job does not write on every request.
LAST_USE_RESOLUTION = datetime.timedelta(minutes=1)


class ApiToken(models.Model):
    """A named API token a user made for themselves. Only the sha256 of its key is kept: the key is shown
    once, when it is made."""

    class Scope(models.TextChoices):
        READ = "read", "read"
        SUBMIT = "submit", "submit"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(
        max_length=10,
        choices=Scope.choices,
        help_text="read: safe methods only (GET, HEAD, OPTIONS); submit: also writes, as far as the user's role allows.",
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    def use_is_due(self, now: datetime.datetime | None = None) -> bool:
        """Whether this use should be written: never used, or last written over a minute ago."""
        now = now or timezone.now()
        return self.last_used_at is None or now - self.last_used_at >= LAST_USE_RESOLUTION
