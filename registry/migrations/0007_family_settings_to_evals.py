from django.db import migrations


class Migration(migrations.Migration):
    # The evaluation settings now live in evals' EvaluationProfile, whose migration copies them first.

    dependencies = [
        ("registry", "0006_family_dataset_pins"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="modelfamily",
            name="generation",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="judge",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="max_length",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="sampling",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="sampling_chunk_size",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="sampling_min_samples",
        ),
        migrations.RemoveField(
            model_name="modelfamily",
            name="scorers",
        ),
    ]
