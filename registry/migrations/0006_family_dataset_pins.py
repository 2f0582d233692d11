import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0005_family_judge"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="modelfamily",
            name="dataset_pins",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Golden dataset name → the version its runs score: set at the first run, then moved only on purpose.",
            ),
        ),
        migrations.CreateModel(
            name="DatasetPinChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("dataset", models.CharField(max_length=100)),
                (
                    "from_version",
                    models.PositiveIntegerField(blank=True, help_text="Empty: the first pin.", null=True),
                ),
                ("to_version", models.PositiveIntegerField()),
                ("reason", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "family",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="pin_changes",
                        to="registry.modelfamily",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
    ]
