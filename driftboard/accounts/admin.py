from django.contrib import admin

from driftboard.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Admins see everyone's tokens and revoke them (delete); keys are made by their owners, on their page."""

    list_display = ("name", "user", "scope", "created_at", "last_used_at")
    list_filter = ("scope",)
    search_fields = ("name", "user__username")
    fields = ("name", "user", "scope", "created_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
