"""`manage.py evaluate --weights latest.bin --subset golden.parquet`: score weights on a golden file.

Runs without any server: the scoring engine, the golden file and, with --baseline, a paired
comparison. Progress goes to stderr; stdout gets a table, or exactly one JSON object with --json.
"""

import json
import sys
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evals.scoring import drift
from evals.scoring.cache import InMemoryResultStore, ScoringConfig, fingerprint, score_samples
from evals.scoring.errors import ScoringError
from evals.scoring.golden_io import GoldenFileError, dataset_sha256, read_golden_file
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, load_model
from evals.scoring.scorers import METRICS, scorers_for
from evals.scoring.summary import metric_value
from registry.models import ModelFamily


class Command(BaseCommand):
    help = "Score weights on a golden file (Parquet, JSONL or CSV), optionally against a baseline."
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--weights", type=Path, required=True, help="HF folder, .safetensors or .bin")
        parser.add_argument("--subset", type=Path, required=True, help="golden file")
        parser.add_argument("--family", help="family whose base folder gives config and tokenizer")
        parser.add_argument("--base-dir", type=Path, help="HF folder with config and tokenizer (instead of --family)")
        parser.add_argument("--kind", choices=[CAUSAL_LM, EMBEDDING], default=None)
        parser.add_argument("--baseline", type=Path, help="weights to compare with, sample by sample")
        parser.add_argument("--max-length", type=int, default=None)
        parser.add_argument("--limit", type=int, default=None, help="score only the first N samples")
        parser.add_argument("--device", default="auto")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, **options) -> None:
        samples = self.read_samples(options["subset"], options["limit"])
        base_dir, kind = self.resolve_family(options)
        config = ScoringConfig(max_length=options["max_length"])
        candidate = self.score(options["weights"], samples, base_dir, kind, config, options["device"], "candidate")
        report = self.report(candidate, samples)
        if options["baseline"]:
            baseline = self.score(options["baseline"], samples, base_dir, kind, config, options["device"], "baseline")
            report["comparison"] = self.compare(candidate, baseline, samples)
        if options["as_json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
        else:
            self.print_table(report)

    def read_samples(self, path: Path, limit: int | None) -> list[dict]:
        try:
            samples = read_golden_file(path)
        except (GoldenFileError, OSError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        return samples[:limit] if limit else samples

    def resolve_family(self, options) -> tuple[Path | None, str]:
        if not options["family"]:
            return options["base_dir"], options["kind"] or CAUSAL_LM

        family = ModelFamily.objects.filter(slug=options["family"]).first()
        if family is None:
            raise CommandError(f"Unknown family {options['family']!r}.")
        return options["base_dir"] or (Path(family.base_path) if family.base_path else None), family.kind

    def score(self, weights, samples, base_dir, kind, config, device, label):
        try:
            lm = load_model(weights, kind=kind, base_dir=base_dir, device=device)
            with tqdm(total=len(samples), desc=label, unit="sample", file=sys.stderr) as bar:
                scored = score_samples(
                    lm, samples, InMemoryResultStore(), config, progress=lambda done: bar.update(done - bar.n)
                )
        except (ScoringError, OSError, ValueError) as exc:
            raise CommandError(f"{weights}: {exc}") from exc
        return lm, config, scored

    @staticmethod
    def arrays(scored) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Metric → (sample indices, numerators, denominators)."""
        return {name: scored.arrays(name) for name in scored.metrics}

    def report(self, result, samples) -> dict:
        lm, config, scored = result
        arrays = self.arrays(scored)
        metrics = {name: metric_value(METRICS[name], num, den) for name, (_, num, den) in arrays.items()}
        if "causal-nll" in scored.results:
            values = scored.values("causal-nll")
            metrics.update(
                nll_sum=float(np.sum(values["nll"])),
                tokens=int(np.sum(values["tokens"])),
                bytes=int(np.sum(values["bytes"])),
            )
        categories = np.array([s.get("category") or "" for s in samples], dtype=object)
        per_category = {}
        for category in sorted(set(categories)):
            row = {}
            for name, (indices, num, den) in arrays.items():
                mask = categories[indices] == category
                row[name] = metric_value(METRICS[name], num[mask], den[mask])
            per_category[category or "uncategorised"] = {**row, "samples": int((categories == category).sum())}
        return {
            "metrics": metrics,
            "per_category": per_category,
            "samples": len(samples),
            "tokens_per_second": scored.tokens_scored / scored.seconds
            if scored.seconds and scored.tokens_scored
            else None,
            "forward_passes": scored.forward_passes,
            "fingerprint": fingerprint(lm, scorers_for(lm.kind, config.scorers)[0], config, dataset_sha256(samples)),
        }

    def compare(self, candidate, baseline, samples) -> dict:
        cand_arrays, base_arrays = self.arrays(candidate[2]), self.arrays(baseline[2])
        categories = np.array([s.get("category") or "" for s in samples], dtype=object)
        comparison = {}
        for name, (indices, cand_num, cand_den) in cand_arrays.items():
            _, base_num, base_den = base_arrays[name]
            result = drift.compare(
                METRICS[name], cand_num, cand_den, base_num, base_den, categories=list(categories[indices])
            )
            comparison[name] = {
                "candidate": result.candidate,
                "baseline": result.baseline,
                "delta": result.delta,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "p_value": result.p_value,
                "ks": result.ks,
                "wasserstein": result.wasserstein,
            }
        return comparison

    def print_table(self, report: dict) -> None:
        self.stdout.write(f"{report['samples']} samples")
        for name, value in report["metrics"].items():
            self.stdout.write(f"  {name:<16} {value:>14.6g}")
        for category, values in report["per_category"].items():
            cells = "  ".join(f"{k}={v:.4g}" for k, v in values.items())
            self.stdout.write(f"  [{category}] {cells}")
        for name, c in report.get("comparison", {}).items():
            self.stdout.write(
                f"  {name}: candidate {c['candidate']:.5g} vs baseline {c['baseline']:.5g}, "
                f"change {100 * c['delta']:+.2f} % (95 % CI {100 * c['ci_low']:+.2f} … {100 * c['ci_high']:+.2f} %; "
                "negative is worse)"
            )
        if report["tokens_per_second"]:
            self.stdout.write(f"  {report['tokens_per_second']:.0f} tokens/s")
