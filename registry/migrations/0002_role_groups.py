"""The three role groups (reader, reviewer, admin; see driftboard/roles.py).

Membership is what the application checks. The admin group also carries the model permissions
that let a staff member of it manage thresholds, families and API tokens in the Django admin.
"""

from django.db import migrations

ROLE_GROUPS = ("reader", "reviewer", "admin")
ADMIN_PERMISSIONS = {
    ("evals", "threshold"): ("add", "change", "view"),
    ("registry", "modelfamily"): ("add", "change", "view"),
    ("authtoken", "token"): ("add", "change", "delete", "view"),
    ("authtoken", "tokenproxy"): ("add", "change", "delete", "view"),
}


def admin_permissions(apps):
    """The permissions rows, created here if post_migrate has not made them yet (a fresh database)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for (app_label, model), actions in ADMIN_PERMISSIONS.items():
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        verbose_name = apps.get_model(app_label, model)._meta.verbose_name
        for action in actions:
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type,
                codename=f"{action}_{model}",
                defaults={"name": f"Can {action} {verbose_name}"},
            )
            yield permission


def create_role_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)
    Group.objects.get(name="admin").permissions.add(*admin_permissions(apps))


def remove_role_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
        ("evals", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [
        migrations.RunPython(create_role_groups, remove_role_groups),
    ]
