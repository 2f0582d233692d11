from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0013_labels"),
    ]

    operations = [
        migrations.AddField(
            model_name="evalrun",
            name="usage",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="What the finished run used and avoided (device, worker seconds, forward passes, tokens, "
                "judge tokens per model, samples cached or left out by sampling); priced by DRIFTBOARD_PRICES.",
            ),
        ),
    ]
