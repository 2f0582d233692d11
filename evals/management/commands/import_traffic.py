from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evals.scoring.golden_io import GoldenFileError
from evals.services.traffic import traffic_import
from registry.models import ModelFamily


class Command(BaseCommand):
    help = (
        "Store a production query log (JSONL, Parquet or CSV) as traffic windows of a family and queue their scoring."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("family", help="The family's slug.")
        parser.add_argument("file", type=Path)
        parser.add_argument("--window", help="Split by timestamp into windows of this length: 1h, 6h, 1d, 7d, 1w.")

    def handle(self, *args, family: str, file: Path, window: str | None, **options) -> None:
        target = ModelFamily.objects.filter(slug=family).first()
        if target is None:
            raise CommandError(f"No family {family!r}.")
        if not file.is_file():
            raise CommandError(f"{file} does not exist.")
        try:
            windows = traffic_import(family=target, filename=file.name, source=file.read_bytes(), window=window)
        except GoldenFileError as exc:
            raise CommandError(f"{file.name}: {exc}") from exc
        for w in windows:
            queued = f"queued run {w.run_id}" if w.run_id else "not scored: no production artifact"
            self.stdout.write(
                f"window {w.number}: {w.starts_at:%Y-%m-%d %H:%M} to {w.ends_at:%Y-%m-%d %H:%M} UTC, "
                f"{w.dataset.sample_count} samples, sha256 {w.dataset.sha256[:12]}, {queued}"
            )
        self.stdout.write(self.style.SUCCESS(f"{len(windows)} traffic window(s) for {target.slug}"))
