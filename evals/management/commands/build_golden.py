from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evals.scoring.golden_io import GoldenFileError
from evals.services.traffic import GoldenRecipe, golden_build
from registry.models import ModelFamily


class Command(BaseCommand):
    help = (
        "Draw a golden subset from a query log: a stratified random sample that keeps every category, plus "
        "the samples the family's production model finds most surprising, frozen with its recipe and seed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="The golden dataset's name; the subset becomes its next version.")
        parser.add_argument("--from", dest="source", type=Path, required=True, help="The log (JSONL, Parquet, CSV).")
        parser.add_argument("--size", type=int, default=1000)
        parser.add_argument("--stratify", choices=["category", "none"], default="category")
        parser.add_argument("--min-per-category", type=int, default=20)
        parser.add_argument(
            "--outliers", default="0", help="Most surprising samples to add: '5%%' of the size, or a count."
        )
        parser.add_argument("--family", help="Whose production model finds the outliers.")
        parser.add_argument("--seed", type=int, help="Recorded either way; give it to rebuild a subset.")

    def handle(self, *args, name: str, source: Path, family: str | None, **options) -> None:
        if not source.is_file():
            raise CommandError(f"{source} does not exist.")
        target = ModelFamily.objects.filter(slug=family).first() if family else None
        if family and target is None:
            raise CommandError(f"No family {family!r}.")
        recipe = GoldenRecipe(
            size=options["size"],
            stratify=options["stratify"],
            min_per_category=options["min_per_category"],
            outliers=options["outliers"],
            seed=options["seed"],
        )
        try:
            dataset = golden_build(
                name=name, filename=source.name, source=source.read_bytes(), recipe=recipe, family=target
            )
        except (GoldenFileError, ValueError) as exc:
            raise CommandError(f"{source.name}: {exc}") from exc
        kept = ", ".join(f"{c or 'uncategorised'} {n}" for c, n in sorted(dataset.categories.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"{dataset.name} v{dataset.version}: {dataset.sample_count} samples ({kept}), "
                f"seed {dataset.recipe['seed']}, sha256 {dataset.sha256}"
            )
        )
