"""`manage.py evaluate --weights latest.bin --subset golden.parquet`: score weights on a golden file.

Runs without any server: the scoring engine, the golden file and, with --baseline, a paired
comparison. Progress goes to stderr; stdout gets a table, or exactly one JSON object with --json.
With --generate the model answers each sample's prompt (or chat messages) once and the answer
scorers (--scorers, default answer-checks and, with --embedder, answer-similarity; their options by
--scorer-options) check the answers through the same engine as the workers. A conversation (a sample
with `turns`) is answered turn by turn after the model's own earlier answers; its value is the mean of
its turns' (--turns last|min), `per_turn` gives each turn's metrics over the conversations, and a
judge reads the whole conversation.

With --generate and --baseline the baseline answers first, then the candidate's greedy answers are
drafted from the baseline's (speculative verification: the candidate checks a run of the baseline's
tokens in one forward pass and keeps them as far as they are its own greedy choices), so an answer
is exactly the one plain decoding gives, in fewer forward passes where the two models agree (where they
do not, drafting costs more than it saves: --no-drafts); conversations turn by turn, as far as the
candidate's earlier answers are the baseline's. One drafted answer in
DRIFTBOARD_DRAFT_AUDIT (default 50) is also decoded plainly and compared. The report's `drafting` says
what drafting did (tokens drafted and accepted, forward passes saved, answers unchanged from the
baseline's and the median token where the others depart from it).
"""

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evals.management.commands._judging import (
    add_judge_arguments,
    judge_answers,
    judging_asked,
    merge_judge_report,
)
from evals.scoring import conversations, drift
from evals.scoring.cache import (
    InMemoryResultStore,
    ScoredSamples,
    ScoringConfig,
    fingerprint,
    has_field,
    score_samples,
)
from evals.scoring.errors import ScoringError
from evals.scoring.generation import (
    ENGINE_VERSION,
    Drafting,
    GenerationSettings,
    InMemoryGenerationStore,
    chat_template_sha256,
)
from evals.scoring.generation.drafts import drafts_from_answers
from evals.scoring.golden_io import GoldenFileError, dataset_sha256, read_golden_file
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, MODEL_CACHE, load_model
from evals.scoring.scorers import METRICS, SCORERS, on_judge_queue, scorers_for
from evals.scoring.scorers.generated_answers import EMBEDDER_ENV
from evals.scoring.summary import metric_value
from evals.scoring.task_files import MULTIPLE_CHOICE, TaskFileError, read_task_file
from registry.models import ModelFamily

TASK_SUFFIXES = (".yaml", ".yml")


class Command(BaseCommand):
    help = "Score weights on a golden file (Parquet, JSONL or CSV), optionally against a baseline."
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--weights", type=Path, required=True, help="HF folder, .safetensors or .bin")
        parser.add_argument(
            "--subset", type=Path, required=True, help="golden file, or an lm-evaluation-harness task file (.yaml)"
        )
        parser.add_argument("--family", help="family whose base folder gives config and tokenizer")
        parser.add_argument("--base-dir", type=Path, help="HF folder with config and tokenizer (instead of --family)")
        parser.add_argument("--kind", choices=[CAUSAL_LM, EMBEDDING], default=None)
        parser.add_argument(
            "--baseline",
            type=Path,
            help="weights to compare with, sample by sample (with --generate answered first; its answers draft the "
            "candidate's)",
        )
        parser.add_argument("--max-length", type=int, default=None)
        parser.add_argument("--limit", type=int, default=None, help="score only the first N samples")
        parser.add_argument("--device", default="auto")
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument("--generate", action="store_true", help="answer the prompts and check the answers")
        parser.add_argument("--max-new-tokens", type=int, default=64, help="with --generate (default 64)")
        parser.add_argument("--stop", nargs="+", default=[], help="with --generate: stop strings")
        parser.add_argument(
            "--no-drafts",
            action="store_true",
            help="with --generate and --baseline: decode the candidate plainly (by default its greedy answers "
            "are drafted from the baseline's: the same answers, in fewer forward passes where the models agree)",
        )
        parser.add_argument(
            "--embedder", type=Path, help=f"embedding model folder for answer_similarity (${EMBEDDER_ENV})"
        )
        parser.add_argument("--show", type=int, default=0, help="with --generate: print N prompt / answer / reference")
        parser.add_argument(
            "--turns",
            choices=conversations.TURN_AGGREGATES,
            default="mean",
            help="with --generate: how a conversation's turns make its value (default mean)",
        )
        parser.add_argument(
            "--scorers",
            nargs="+",
            default=None,
            help="scorers to run by name (default: the kind's; with --generate answer-checks, and "
            "answer-similarity when an embedder is given)",
        )
        parser.add_argument(
            "--scorer-options",
            type=_scorer_options,
            default=None,
            help='option values per scorer as JSON, e.g. \'{"flagged-words": {"words": ["damn"]}}\'',
        )
        add_judge_arguments(parser)

    def handle(self, *args, **options) -> None:
        if options["subset"].suffix in TASK_SUFFIXES:
            samples = self.read_task(options)
        else:
            samples = self.read_samples(options["subset"], options["limit"], prompts=options["generate"])
        base_dir, kind = self.resolve_family(options)
        self.scorer_options = options["scorer_options"]
        if options["generate"]:
            self.handle_generation(samples, base_dir, options)
            return
        config = ScoringConfig(max_length=options["max_length"], scorers=tuple(options["scorers"] or ()))
        candidate = self.score(options["weights"], samples, base_dir, kind, config, options["device"], "candidate")
        report = self.report(candidate, samples)
        if options["baseline"]:
            baseline = self.score(options["baseline"], samples, base_dir, kind, config, options["device"], "baseline")
            report["comparison"] = self.compare(candidate, baseline, samples)
        if options["as_json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
        else:
            self.print_table(report)

    def handle_generation(self, samples: list[dict], base_dir: Path | None, options: dict) -> None:
        asked = [sample for sample in samples if any(sample.get(name) for name in ("prompt", "messages", "turns"))]
        if not asked:
            raise CommandError(f"{options['subset']}: --generate needs samples with a prompt, messages or turns")
        try:
            run = GenerationRun(asked, options)
        except ScoringError as exc:
            raise CommandError(str(exc)) from exc
        baseline = drafting = None
        if options["baseline"]:
            baseline = self.generate(run, options["baseline"], base_dir, options["device"], "baseline")
            if not options["no_drafts"]:
                source = baseline[0].weights_sha256
                drafting = Drafting(
                    lookup=drafts_from_answers(baseline[2].store.generations, source),
                    audit_every=django_settings.DRIFTBOARD_DRAFT_AUDIT,
                )
        candidate = self.generate(run, options["weights"], base_dir, options["device"], "candidate", drafting)
        report = self.generation_report(run, *candidate)
        if drafting is not None:
            report["drafting"] = _drafting_report(drafting, candidate[2].store, baseline[0].weights_sha256)
        if baseline is not None:
            report["comparison"] = self.compare(candidate, baseline, asked)
            report["baseline_generations"] = [
                _generation(s, text) for s, text in zip(asked, baseline[2].answers, strict=True)
            ]
        if judging_asked(options):
            baseline_answers = baseline[2].answers if options["baseline"] else None
            merge_judge_report(report, judge_answers(asked, candidate[2].answers, baseline_answers, options))
        if options["as_json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
            return
        self.print_table(report)
        self.print_answers(asked, report, options["show"])

    def generate(
        self,
        run: "GenerationRun",
        weights: Path,
        base_dir: Path | None,
        device: str,
        label: str,
        drafting: Drafting | None = None,
    ):
        try:
            lm = load_model(weights, kind=CAUSAL_LM, base_dir=base_dir, device=device)
            return lm, None, run.score(lm, label, drafting)
        except (ScoringError, OSError, ValueError) as exc:
            raise CommandError(f"{weights}: {exc}") from exc

    def generation_report(self, run: "GenerationRun", lm, _config, scores: "AnswerScores") -> dict:
        report = {
            **self.metric_tables(scores, run.samples),
            "samples": len(run.samples),
            "tokens_per_second": scores.tokens / scores.seconds if scores.seconds and scores.tokens else None,
            "forward_passes": scores.forward_passes,
            "fingerprint": run.fingerprint(lm),
            "generations": [_generation(s, text) for s, text in zip(run.samples, scores.answers, strict=True)],
        }
        per_turn = run.per_turn(lm, scores)
        if per_turn:
            report["per_turn"] = {
                str(number): {**self.metric_tables(scored, asked)["metrics"], "conversations": len(asked)}
                for number, (asked, scored) in per_turn.items()
            }
        return report

    def print_answers(self, samples: list[dict], report: dict, count: int) -> None:
        for sample, answer in list(zip(samples, report["generations"], strict=True))[:count]:
            self.stdout.write(f"\n[{sample['id']}]")
            if answer.get("turns") is not None:
                users = conversations.user_turns(sample[conversations.TURNS])
                for number, (turn, said) in enumerate(zip(users, answer["turns"], strict=True), start=1):
                    self.stdout.write(f"  turn {number}:    {_shown(turn['content'])}")
                    self.stdout.write(f"  answer:    {_shown(said)}")
                    self.stdout.write(f"  reference: {_shown(turn.get('reference') or '')}")
                continue
            self.stdout.write(f"  prompt:    {_shown(_asked_text(sample))}")
            self.stdout.write(f"  answer:    {_shown(answer['text'])}")
            self.stdout.write(f"  reference: {_shown(sample.get('reference') or '')}")

    def read_samples(self, path: Path, limit: int | None, prompts: bool = False) -> list[dict]:
        try:
            samples = read_golden_file(path, prompts=prompts)
        except (GoldenFileError, OSError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        return samples[:limit] if limit else samples

    def read_task(self, options: dict) -> list[dict]:
        """The documents of an lm-evaluation-harness task file; a multiple-choice task runs the
        multiple-choice scorer with its delimiter, a generation task generates with its stop strings."""
        try:
            task = read_task_file(options["subset"])
        except (TaskFileError, GoldenFileError) as exc:
            raise CommandError(f"{options['subset']}: {exc}") from exc
        if task.output_type == MULTIPLE_CHOICE:
            options["scorers"] = options["scorers"] or ["multiple-choice"]
            if task.target_delimiter != " " and options["scorer_options"] is None:
                options["scorer_options"] = {"multiple-choice": {"target_delimiter": task.target_delimiter}}
        else:
            options["generate"] = True
            options["stop"] = options["stop"] or task.until
        return task.samples[: options["limit"]] if options["limit"] else task.samples

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
                    lm,
                    samples,
                    InMemoryResultStore(),
                    config,
                    scorers=scorers_for(lm.kind, config.scorers, self.scorer_options),
                    progress=lambda done: bar.update(done - bar.n),
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
        tables = self.metric_tables(scored, samples)
        metrics = tables["metrics"]
        if "causal-nll" in scored.results:
            values = scored.values("causal-nll")
            metrics.update(
                nll_sum=float(np.sum(values["nll"])),
                tokens=int(np.sum(values["tokens"])),
                bytes=int(np.sum(values["bytes"])),
            )
        return {
            **tables,
            "samples": len(samples),
            "tokens_per_second": scored.tokens_scored / scored.seconds
            if scored.seconds and scored.tokens_scored
            else None,
            "forward_passes": scored.forward_passes,
            "fingerprint": fingerprint(lm, scorers_for(lm.kind, config.scorers)[0], config, dataset_sha256(samples)),
        }

    def metric_tables(self, scored, samples: list[dict]) -> dict:
        """Each metric over the samples it applies to, overall and per category."""
        arrays = self.arrays(scored)
        metrics = {name: metric_value(METRICS[name], num, den) for name, (_, num, den) in arrays.items()}
        categories = np.array([s.get("category") or "" for s in samples], dtype=object)
        per_category = {}
        for category in sorted(set(categories)):
            row = {}
            for name, (indices, num, den) in arrays.items():
                mask = categories[indices] == category
                row[name] = metric_value(METRICS[name], num[mask], den[mask])
            per_category[category or "uncategorised"] = {**row, "samples": int((categories == category).sum())}
        return {"metrics": metrics, "per_category": per_category}

    def compare(self, candidate, baseline, samples) -> dict:
        cand_arrays, base_arrays = self.arrays(candidate[2]), self.arrays(baseline[2])
        categories = np.array([s.get("category") or "" for s in samples], dtype=object)
        comparison = {}
        for name, (indices, cand_num, cand_den) in cand_arrays.items():
            _, base_num, base_den = base_arrays[name]
            try:
                result = drift.compare(
                    METRICS[name], cand_num, cand_den, base_num, base_den, categories=list(categories[indices])
                )
            except drift.UndefinedRelativeDelta as exc:  # a baseline of zero (no exact match at all)
                spec = METRICS[name]
                comparison[name] = {
                    "candidate": metric_value(spec, cand_num, cand_den),
                    "baseline": metric_value(spec, base_num, base_den),
                    "delta": None,
                    "undefined": str(exc),
                }
                continue
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
        for number, values in report.get("per_turn", {}).items():
            cells = "  ".join(f"{k}={v:.4g}" for k, v in values.items() if v is not None)
            self.stdout.write(f"  [turn {number}] {cells}")
        for name, c in report.get("comparison", {}).items():
            if name == "judge_preference":
                self.stdout.write(
                    f"  judge preference {c['delta']:+.3f} (95 % CI {c['ci_low']:+.3f} … {c['ci_high']:+.3f}; "
                    f"{c['samples']} samples, {c['errors']} judge errors): {c['outcome']}"
                )
                continue
            if c["delta"] is None:
                self.stdout.write(
                    f"  {name}: candidate {c['candidate']:.5g} vs baseline {c['baseline']:.5g} ({c['undefined']})"
                )
                continue
            self.stdout.write(
                f"  {name}: candidate {c['candidate']:.5g} vs baseline {c['baseline']:.5g}, "
                f"change {100 * c['delta']:+.2f} % (95 % CI {100 * c['ci_low']:+.2f} … {100 * c['ci_high']:+.2f} %; "
                "negative is worse)"
            )
        if report["tokens_per_second"]:
            self.stdout.write(f"  {report['tokens_per_second']:.0f} tokens/s")
        if "drafting" in report:
            d = report["drafting"]
            self.stdout.write(
                f"  drafted from the baseline: {d['answers']} answers ({d['unchanged']} unchanged), "
                f"{d['accepted_tokens']} of {d['drafted_tokens']} draft tokens accepted, "
                f"{d['forward_passes_saved']} forward passes saved"
            )


@dataclass(frozen=True)
class AnswerScores:
    """The answer scorers' results (the engine's `ScoredSamples`) with the answers themselves."""

    scored: ScoredSamples
    # A prompt's answer, or a conversation's answers turn by turn.
    answers: list[str | list[str]]
    forward_passes: int
    tokens: int
    seconds: float
    # Where the answers are kept (each turn of a conversation under the messages asking it).
    store: InMemoryGenerationStore | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.scored.metrics

    def arrays(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.scored.arrays(metric)


class GenerationRun:
    """--generate: answer every prompt once per weights, then run the chosen scorers through the
    engine, every one that needs answers sharing them (none is generated twice)."""

    def __init__(self, samples: list[dict], options: dict) -> None:
        self.samples = samples
        self.settings = GenerationSettings(max_new_tokens=options["max_new_tokens"], stop=tuple(options["stop"]))
        self.turns = options["turns"]
        embedder = options["embedder"] or os.environ.get(EMBEDDER_ENV)
        self.embedder = str(embedder) if embedder else None
        self.scorers = options["scorers"] or ["answer-checks", *(["answer-similarity"] if self.embedder else [])]
        chosen = scorers_for(CAUSAL_LM, self.scorers, options["scorer_options"])
        judges = [scorer.name for scorer in chosen if on_judge_queue(scorer)]
        if judges:
            raise ScoringError(f"judge scorers {judges} run with --judge-url / --judge-local, not --scorers")
        self.chosen = chosen
        self.refuse_incomplete(chosen)

    def refuse_incomplete(self, scorers) -> None:
        """A sample without a field a chosen scorer needs (a reference, say) is refused, naming it."""
        for scorer in scorers:
            for field in scorer.fields:
                lacking = [s["id"] for s in self.samples if not any(has_field(s, name) for name in field.split("|"))]
                if lacking:
                    raise ScoringError(
                        f"{len(lacking)} samples have no {field}, which the {scorer.name} scorer reads: {lacking[:5]}"
                    )

    def score(self, lm, label: str, drafting: Drafting | None = None) -> AnswerScores:
        """Answer every sample (greedy answers drafted by `drafting`, if given) and score the answers."""
        store = InMemoryGenerationStore()
        started = time.perf_counter()
        with tqdm(total=len(self.samples), desc=label, unit="sample", file=sys.stderr) as bar:
            generated = conversations.answer_samples(
                lm,
                self.samples,
                store,
                self.settings,
                progress=lambda done: bar.update(done - bar.n),
                drafting=drafting,
            )
        seconds = time.perf_counter() - started
        scored = score_samples(lm, self.samples, InMemoryResultStore(), ScoringConfig(), scorers=self.configured(store))
        passes = generated.forward_passes + scored.forward_passes
        return AnswerScores(scored, generated.texts, passes, generated.tokens, seconds, store)

    def configured(self, store) -> list:
        """The chosen scorers with this run's generation settings, embedder, turn aggregate and answers."""
        answers = {"generation": self.settings, "embedder": self.embedder, "store": store, "turns": self.turns}
        return [scorer.configured(**answers) if scorer.needs.answers else scorer for scorer in self.chosen]

    def per_turn(self, lm, scores: AnswerScores) -> dict[int, tuple[list[dict], ScoredSamples]]:
        """Each turn number's own samples over the conversations that reach it (the messages asking it,
        the model's earlier answers included, and the turn's reference), scored on the answers already
        stored: what every turn is worth, where the conversation's value is their aggregate."""
        by_turn: dict[int, list[dict]] = {}
        for sample, said in zip(self.samples, scores.answers, strict=True):
            if not sample.get(conversations.TURNS):
                continue
            asked = conversations.turn_messages(sample[conversations.TURNS], said)
            for number, (messages, turn) in enumerate(
                zip(asked, conversations.user_turns(sample[conversations.TURNS]), strict=True), start=1
            ):
                by_turn.setdefault(number, []).append(
                    {"id": sample["id"], "messages": messages, "reference": turn.get("reference"), "category": ""}
                )
        scorers = self.configured(scores.store)
        return {
            number: (asked, score_samples(lm, asked, InMemoryResultStore(), ScoringConfig(), scorers=scorers))
            for number, asked in sorted(by_turn.items())
        }

    def fingerprint(self, lm) -> dict:
        facts = {
            "dataset_sha256": dataset_sha256(self.samples),
            "weights_sha256": lm.weights_sha256,
            "tokenizer_hash": lm.tokenizer_hash,
            "scorer_version": ",".join(f"{name}@{SCORERS[name].version}" for name in self.scorers),
            "generation": self.settings.as_dict(),
            "chat_template_sha256": chat_template_sha256(lm.tokenizer),
            "generation_engine": ENGINE_VERSION,
            "dtype": str(lm.dtype).removeprefix("torch."),
            "device": lm.device.type,
        }
        if self.embedder:
            embedder = MODEL_CACHE.get(self.embedder, kind=EMBEDDING, device=str(lm.device))
            facts["embedder_sha256"] = embedder.weights_sha256
        return facts


SHOWN_CHARS = 200


def _scorer_options(text: str) -> dict:
    """--scorer-options: a JSON object {scorer: {option: value}} (each option checked by its scorer)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('an object of objects, e.g. {"flagged-words": {"words": ["damn"]}}')
    return value


def _drafting_report(drafting: Drafting, store: InMemoryGenerationStore, source: str) -> dict:
    """What drafting the candidate's answers from the baseline's did: the engine's counts, how many
    drafted answers (each turn of a conversation one) are the baseline's word for word, and the median
    token at which the others depart from the baseline's (None when none does)."""
    drafted = [answer for answer in store.generations.values() if answer.drafted_from == source]
    departs = [answer.departs_at_token for answer in drafted if answer.departs_at_token is not None]
    return {
        **drafting.stats.as_dict(),
        "unchanged": len(drafted) - len(departs),
        "departs_at_token_median": statistics.median(departs) if departs else None,
    }


def _generation(sample: dict, said: str | list[str]) -> dict:
    """One answer of the report: a prompt's text; a conversation's last answer and every turn's."""
    if isinstance(said, str):
        return {"id": sample["id"], "text": said}
    return {"id": sample["id"], "text": said[-1], "turns": list(said)}


def _asked_text(sample: dict) -> str:
    """A plain prompt, or the last chat turn with its role."""
    if sample.get("messages"):
        turn = sample["messages"][-1]
        return f"{turn['role']}: {turn['content']}"
    return sample["prompt"]


def _shown(text: str) -> str:
    """One line of at most SHOWN_CHARS characters, newlines and control characters escaped."""
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return escaped if len(escaped) <= SHOWN_CHARS else escaped[: SHOWN_CHARS - 1] + "…"
