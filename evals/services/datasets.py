import tempfile
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from driftboard.roles import can_change_families
from evals.models import GoldenDataset, GoldenSample
from evals.scoring import golden_io, task_files
from registry.models import ModelFamily
from registry.selectors import families_gating_on

SAMPLE_BATCH = 1000


class DatasetChangeRefused(PermissionError):
    """A golden set that families gate on gets a new version only from an admin or an owner of them all."""

    def __init__(self, name: str, families: list[ModelFamily]):
        self.families = families
        slugs = ", ".join(f.slug for f in families)
        super().__init__(
            f"Only staff or an owner of every family that gates on {name!r} may add a version to it "
            f"(families: {slugs})."
        )


def dataset_change_check(*, name: str, user) -> list[ModelFamily]:
    """The families gating on `name`, or DatasetChangeRefused when `user` may not version it.

    `user` None is a server-side command run by an operator, who may.
    """
    families = families_gating_on(name)
    if user is not None and families and not can_change_families(user, families):
        raise DatasetChangeRefused(name, families)
    return families


def dataset_import(*, name: str, filename: str, source: BinaryIO | Path | str, user=None) -> GoldenDataset:
    """Validate a Parquet / JSONL / CSV file and freeze it as the next version of `name`.

    Raises golden_io.GoldenFileError (with the row number) and stores nothing on bad input.
    An upload identical to the latest version returns that version instead of a copy.
    """
    content = source if isinstance(source, (str, Path)) else source.read()
    samples = golden_io.read_golden_file(
        content,
        filename=filename,
        max_rows=settings.DRIFTBOARD_MAX_DATASET_ROWS,
        max_chars=settings.DRIFTBOARD_MAX_SAMPLE_CHARS,
        prompts=True,
    )
    return dataset_freeze(name=name, samples=samples, source_name=filename, user=user)


def dataset_import_task(
    *, task_file: Path, name: str | None = None, user=None, data_roots: list[Path] | None = None
) -> GoldenDataset:
    """Read an lm-evaluation-harness task file with local data and freeze its documents as the next
    version of `name` (default: the task's name), recording the file's sha256 and how it is scored.
    `data_roots`: the folders its data files may lie in (None: anywhere, for an operator's command).

    Raises task_files.TaskFileError or golden_io.GoldenFileError and stores nothing on bad input."""
    task = task_files.read_task_file(
        task_file,
        data_roots=data_roots,
        max_rows=settings.DRIFTBOARD_MAX_DATASET_ROWS,
        max_chars=settings.DRIFTBOARD_MAX_SAMPLE_CHARS,
    )
    return dataset_freeze(
        name=name or task.name, samples=task.samples, source_name=task_file.name, user=user, recipe=task.recipe
    )


def dataset_import_task_upload(*, filename: str, source: BinaryIO, name: str | None = None, user=None) -> GoldenDataset:
    """`dataset_import_task` for an uploaded task file: its data files must lie in the import
    folders (`DRIFTBOARD_IMPORT_ROOTS`), named by absolute path, since an upload has no folder."""
    with tempfile.TemporaryDirectory() as folder:
        # The upload's own name never becomes a path here; its `task:` names the dataset.
        task_file = Path(folder) / "upload.yaml"
        task_file.write_bytes(source.read())
        return dataset_import_task(
            task_file=task_file, name=name, user=user, data_roots=list(settings.DRIFTBOARD_IMPORT_ROOTS)
        )


def dataset_freeze(
    *,
    name: str,
    samples: list[golden_io.Sample],
    source_name: str,
    user=None,
    purpose: str = GoldenDataset.Purpose.GOLDEN,
    recipe: dict | None = None,
) -> GoldenDataset:
    """Store validated samples as the next version of `name`, or return the latest if it is identical.

    Raises DatasetChangeRefused, storing nothing, when families gate on `name` and `user` may not
    version it; the families keep their pinned versions either way.
    """
    sha256 = golden_io.dataset_sha256(samples)
    latest = GoldenDataset.objects.filter(name=name).order_by("-version").first()
    if latest is not None and latest.sha256 == sha256:
        return latest
    dataset_change_check(name=name, user=user)
    with transaction.atomic():
        version = (
            GoldenDataset.objects.select_for_update().filter(name=name).aggregate(v=Max("version"))["v"] or 0
        ) + 1
        dataset = GoldenDataset.objects.create(
            name=name,
            version=version,
            purpose=purpose,
            recipe=recipe or {},
            sha256=sha256,
            sample_count=len(samples),
            categories=dict(Counter(s["category"] or "" for s in samples)),
            source_name=Path(source_name).name[:300],
            created_by=user if user is not None and user.is_authenticated else None,
        )
        GoldenSample.objects.bulk_create(
            (
                GoldenSample(
                    dataset=dataset,
                    position=i,
                    sample_id=s["id"],
                    text=s["text"] or "",
                    reference=s["reference"] or "",
                    category=s["category"] or "",
                    prompt=s.get("prompt") or "",
                    messages=s.get("messages"),
                    choices=s.get("choices"),
                    answer=s.get("answer"),
                    turns=s.get("turns"),
                    sha256=h,
                )
                for i, (s, h) in enumerate(zip(samples, golden_io.sample_hashes(samples), strict=True))
            ),
            batch_size=SAMPLE_BATCH,
        )
    return dataset
