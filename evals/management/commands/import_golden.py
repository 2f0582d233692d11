from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evals.scoring.golden_io import GoldenFileError
from evals.services import dataset_import


class Command(BaseCommand):
    help = "Freeze a Parquet, JSONL or CSV file as the next version of a golden dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("file", type=Path)

    def handle(self, *args, name: str, file: Path, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file} does not exist.")
        try:
            dataset = dataset_import(name=name, filename=file.name, source=file)
        except GoldenFileError as exc:
            raise CommandError(f"{file.name}: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{dataset.name} v{dataset.version}: {dataset.sample_count} samples, sha256 {dataset.sha256}"
            )
        )
