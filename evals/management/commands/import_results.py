"""`manage.py import_results SLUG FILE`: import an autoresearch results.tsv; run it again as the file grows."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction

from evals.models import Experiment
from evals.services import experiments as services


class Command(BaseCommand):
    help = "Import the rows of a results.tsv not seen before; malformed lines are listed with their numbers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="The experiment; created with the options below when it does not exist.")
        parser.add_argument("file", type=Path, help="The results.tsv to import.")
        parser.add_argument("--objective", default="val_bpb")
        parser.add_argument("--direction", choices=Experiment.Direction.values, default=Experiment.Direction.LOWER)
        parser.add_argument("--time-budget", type=int, default=300, help="Seconds per run.")
        parser.add_argument("--hardware", default="")

    def handle(self, *args, slug: str, file: Path, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file.")
        try:
            with transaction.atomic():  # a file that cannot be read leaves no new experiment behind
                experiment = self.experiment(slug, options)
                report = services.results_import(experiment=experiment, data=file.read_bytes())
        except services.ResultsFileError as exc:
            raise CommandError(str(exc)) from exc
        for problem in report.malformed:
            self.stderr.write(f"{file}:{problem.line}: {problem.message}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{slug}: {len(report.created)} new runs, {report.unchanged} already imported, "
                f"{len(report.malformed)} malformed lines skipped."
            )
        )

    def experiment(self, slug: str, options: dict) -> Experiment:
        experiment = Experiment.objects.filter(slug=slug).first()
        if experiment is not None:
            return experiment
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"{slug!r} is not a valid slug: letters, digits, hyphens and underscores.") from exc
        self.stdout.write(f"Creating experiment {slug}.")
        return services.experiment_create(
            slug=slug,
            objective=options["objective"],
            direction=options["direction"],
            time_budget_s=options["time_budget"],
            hardware=options["hardware"],
        )
