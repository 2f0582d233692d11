"""Per-sample results stored generically: one `values` mapping per (weights, sample, scorer, config).

The old columns (nll, tokens, byte_count, similarity) are copied into `values` under the names the
scorers use (`nll`, `tokens`, `bytes`, `similarity`), so every cached result stays valid and
re-scoring weights already scored runs no forward pass.
"""

from django.db import migrations, models

BATCH = 2000
COLUMNS = {"nll": "nll", "tokens": "tokens", "byte_count": "bytes", "similarity": "similarity"}


def columns_to_values(apps, schema_editor):
    SampleResult = apps.get_model("evals", "SampleResult")
    batch = []
    for row in SampleResult.objects.only("id", *COLUMNS).iterator(chunk_size=BATCH):
        row.values = {
            name: getattr(row, column) for column, name in COLUMNS.items() if getattr(row, column) is not None
        }
        batch.append(row)
        if len(batch) >= BATCH:
            SampleResult.objects.bulk_update(batch, ["values"])
            batch = []
    if batch:
        SampleResult.objects.bulk_update(batch, ["values"])


def values_to_columns(apps, schema_editor):
    SampleResult = apps.get_model("evals", "SampleResult")
    batch = []
    for row in SampleResult.objects.iterator(chunk_size=BATCH):
        for column, name in COLUMNS.items():
            setattr(row, column, row.values.get(name))
        batch.append(row)
        if len(batch) >= BATCH:
            SampleResult.objects.bulk_update(batch, list(COLUMNS))
            batch = []
    if batch:
        SampleResult.objects.bulk_update(batch, list(COLUMNS))


class Migration(migrations.Migration):
    dependencies = [("evals", "0001_initial")]

    operations = [
        migrations.AddField(model_name="sampleresult", name="values", field=models.JSONField(default=dict)),
        migrations.RunPython(columns_to_values, values_to_columns),
        migrations.RemoveField(model_name="sampleresult", name="byte_count"),
        migrations.RemoveField(model_name="sampleresult", name="nll"),
        migrations.RemoveField(model_name="sampleresult", name="similarity"),
        migrations.RemoveField(model_name="sampleresult", name="tokens"),
    ]
