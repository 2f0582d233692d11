from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evals.scoring.golden_io import GoldenFileError
from evals.scoring.task_files import TaskFileError
from evals.services import dataset_import_task


class Command(BaseCommand):
    help = (
        "Freeze the documents of an lm-evaluation-harness task file with local data (multiple_choice or "
        "generate_until) as the next version of a golden dataset."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("task_file", type=Path)
        parser.add_argument("--name", help="the golden dataset's name (default: the task's)")

    def handle(self, *args, task_file: Path, name: str | None, **options) -> None:
        if not task_file.is_file():
            raise CommandError(f"{task_file} does not exist.")
        try:
            dataset = dataset_import_task(task_file=task_file, name=name)
        except (TaskFileError, GoldenFileError) as exc:
            raise CommandError(f"{task_file.name}: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{dataset.name} v{dataset.version}: {dataset.sample_count} samples from {task_file.name} "
                f"(sha256 {dataset.recipe['task_sha256']})"
            )
        )
