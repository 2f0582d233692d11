"""The Django admin, opened to Driftboard's admins: staff, superusers and members of the `admin` group.

What each may change there is still decided by model permissions (the `admin` group carries those for
thresholds, families and API tokens; see registry/migrations/0002_role_groups.py).
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig

from driftboard.roles import can_administer


class AdminSite(admin.AdminSite):
    def has_permission(self, request) -> bool:
        return can_administer(request.user)


class AdminConfig(DjangoAdminConfig):
    default_site = "driftboard.admin_site.AdminSite"
