"""The admin group (driftboard/roles.py) sees everyone's API tokens in the Django admin and revokes them."""

from django.db import migrations

ACTIONS = ("view", "delete")


def token_permissions(apps):
    """The permission rows, created here if post_migrate has not made them yet (a fresh database)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="apitoken")
    for action in ACTIONS:
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=f"{action}_apitoken", defaults={"name": f"Can {action} API token"}
        )
        yield permission


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.add(*token_permissions(apps))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label="accounts", codename__endswith="_apitoken")
    for group in Group.objects.filter(name="admin"):
        group.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("registry", "0002_role_groups"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
