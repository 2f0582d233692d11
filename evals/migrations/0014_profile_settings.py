from django.db import migrations, models

SETTINGS = ("scorers", "generation", "judge", "max_length", "sampling", "sampling_min_samples", "sampling_chunk_size")


def copy_family_settings(apps, schema_editor) -> None:
    """Every family gets a profile holding the evaluation settings it had, before the family loses them."""
    ModelFamily = apps.get_model("registry", "ModelFamily")
    EvaluationProfile = apps.get_model("evals", "EvaluationProfile")
    for family in ModelFamily.objects.all():
        values = {name: getattr(family, name) for name in SETTINGS}
        EvaluationProfile.objects.update_or_create(family=family, defaults=values)


def copy_back(apps, schema_editor) -> None:
    ModelFamily = apps.get_model("registry", "ModelFamily")
    EvaluationProfile = apps.get_model("evals", "EvaluationProfile")
    for profile in EvaluationProfile.objects.all():
        ModelFamily.objects.filter(pk=profile.family_id).update(**{name: getattr(profile, name) for name in SETTINGS})


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0013_labels"),
        ("registry", "0006_family_dataset_pins"),
    ]
    # The registry drops the fields only once they are copied here (the registry may not name evals).
    run_before = [("registry", "0007_family_settings_to_evals")]

    operations = [
        migrations.AddField(
            model_name="evaluationprofile",
            name="generation",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="How answers to prompts are generated and checked: max_new_tokens, stop, chat_template, "
                "embedder (a folder), regex. Empty means the defaults.",
            ),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="judge",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="The family's own judge for judge scorers: url, model, repeats, rubric, concurrency, "
                "rate_per_second, timeout, or local (a model folder). Empty means $DRIFTBOARD_JUDGE_URL / _MODEL.",
            ),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="max_length",
            field=models.PositiveIntegerField(
                blank=True, help_text="Scoring context; empty means the model's own.", null=True
            ),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="sampling",
            field=models.CharField(
                choices=[("off", "Score the full golden set"), ("sequential", "Stop early once the verdict is clear")],
                default="off",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="sampling_chunk_size",
            field=models.PositiveIntegerField(default=50),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="sampling_min_samples",
            field=models.PositiveIntegerField(default=100),
        ),
        migrations.AddField(
            model_name="evaluationprofile",
            name="scorers",
            field=models.JSONField(
                blank=True, default=list, help_text="Names of the scorers run; empty means the defaults of the kind."
            ),
        ),
        migrations.RunPython(copy_family_settings, copy_back),
    ]
