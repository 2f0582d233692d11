import time
from pathlib import Path

from django.core.management.base import BaseCommand

from evals.scoring.demo_models import PRESETS, build_demo_models, summarise_losses


class Command(BaseCommand):
    help = "Train the demo tokenizer and GPT-2 models (base, improved, drifted) and write a golden file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("outdir", type=Path)
        parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, outdir: Path, preset: str, seed: int, **options) -> None:
        started = time.perf_counter()
        build = build_demo_models(outdir, preset=preset, seed=seed, log=self.stdout.write)
        for line in summarise_losses(build.losses):
            self.stdout.write(line)
        self.stdout.write(
            self.style.SUCCESS(
                f"Built {build.base}, {build.improved}, {build.drifted} and {build.golden} "
                f"in {time.perf_counter() - started:.0f} s"
            )
        )
