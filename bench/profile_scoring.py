"""Where the time goes: a worker's scoring run of a generation family, a whole `manage.py evaluate
--generate` process, and a near-copy's registration to its verdict against lm-evaluation-harness.

    python bench/profile_scoring.py                       # all three parts (the demo models built once)
    python bench/profile_scoring.py --part worker         # one part: worker | evaluate | verdict
    python bench/profile_scoring.py --workdir /tmp/prof   # keep the demo models and candidates there
    python bench/profile_scoring.py --model var/demo/base # an existing demo base folder (its golden.jsonl beside it)
    python bench/profile_scoring.py --cprofile 15         # also the 15 costliest functions of the worker run

The family scores `answer-checks` and `answer-similarity` (the packaged MiniLM embedder) on `--prompts`
prompts (starts of the demo golden passages, the rest of each passage as the reference) with
`--max-new-tokens` new tokens, greedy. Its first version, the demo base model, is registered and scored:
it becomes the production baseline and its answers are stored. Candidates are the base weights plus
`--noise` (1 %) Gaussian noise, each tensor scaled by its own spread, a new seed each.

- `worker`: one candidate's run as a scoring worker processes it (`pipeline.eval_run_process`, in this
  process, on a fresh SQLite database), first as a worker that has just started (its model cache and
  embedding cache empty), then as a warm worker (another candidate): seconds per phase — registering
  (hashing the weights), loading the candidate and the embedder, finding drafts, tokenising, generating,
  embedding answers and references, reading and storing cached answers and results, fingerprints,
  snapshots, the verdict, and the rest (claiming, archiving, bookkeeping) — with each one's share, and
  what was computed: forward passes, answers generated, texts embedded, models read from disk.
- `evaluate`: a whole `manage.py evaluate --generate` process on the same prompts (a candidate and
  the embedder): interpreter start, imports, Django
  set-up, model loads, generating, embedding, the report; then the same command timed as it is, bare.
- `verdict`: the issue's "done when" figure, the two sides taking turns, each as a whole process: a
  near-copy registered through `manage.py register`-like code in a fresh process that scores it as a
  worker and stores its verdict (cold: interpreter, imports and model loads included), the same in a
  warm worker (this process, the candidate's registration to its verdict), and lm-evaluation-harness
  (`HFLM.generate_until`, a fresh process: imports, model load, the answers) at each of `--lm-eval-batch-sizes`
  on the same prompts. Every stored answer is checked against the harness's.

Timings are wall time on a shared machine: each table gives the load average when it was measured.
Counts (forward passes, texts embedded, models loaded) are exact.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

STARTED = time.time()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def process_started() -> float:
    """When this process started (Linux: its start tick after boot), for the interpreter's start-up."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return STARTED


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Phases:
    """Wall time by phase: time goes to the innermost phase entered (main thread), else to `rest`."""

    def __init__(self, rest: str) -> None:
        self.rest = rest
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.mark = time.perf_counter()

    def reset(self) -> None:
        self.seconds.clear()
        self.stack.clear()
        self.mark = time.perf_counter()

    def _switch(self) -> None:
        now = time.perf_counter()
        self.seconds[self.stack[-1] if self.stack else self.rest] += now - self.mark
        self.mark = now

    def enter(self, name: str) -> None:
        self._switch()
        self.stack.append(name)

    def leave(self) -> None:
        self._switch()
        self.stack.pop()

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def timed(self, owner: object, attribute: str, phase: str) -> None:
        """Count the calls of `owner.attribute` (a module's function or a class's method) as `phase`."""
        original = getattr(owner, attribute)
        phases = self

        def wrapped(*args, **kwargs):
            phases.enter(phase)
            try:
                return original(*args, **kwargs)
            finally:
                phases.leave()

        setattr(owner, attribute, wrapped)

    def table(self, title: str, order: list[str], total: float | None = None) -> str:
        self._switch()
        total = total if total is not None else sum(self.seconds.values())
        lines = [f"\n{title}", "", "| phase | seconds | share |", "|---|--:|--:|"]
        for name in [*order, *(name for name in self.seconds if name not in order)]:
            if self.seconds.get(name, 0.0) > 0.0005 or name in order:
                value = self.seconds.get(name, 0.0)
                lines.append(f"| {name} | {value:.2f} | {value / total:.0%} |")
        lines.append(f"| **total** | **{total:.2f}** | 100% |")
        return "\n".join(lines)


# ---------------------------------------------------------------- lm-evaluation-harness, a process of its own


def harness_child(args: argparse.Namespace) -> None:
    """lm-evaluation-harness answering the prompts: its imports, its model load and `generate_until`."""
    import contextlib
    import io

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    prompts = json.loads(Path(args.prompts_file).read_text())
    with contextlib.redirect_stderr(io.StringIO()):
        harness = HFLM(pretrained=args.folder, device="cpu", batch_size=args.batch_size, dtype="float32")
        options = {"until": [], "max_gen_toks": args.max_new_tokens, "do_sample": False}
        requests = [Instance("generate_until", {}, (prompt, dict(options)), i) for i, prompt in enumerate(prompts)]
        answers = harness.generate_until(requests, disable_tqdm=True)
    Path(args.answers_file).write_text(json.dumps(answers))


# ---------------------------------------------------------------- Django: the product's side


def configure_django(workdir: Path, *, fresh: bool) -> None:
    var = workdir / "var"
    if fresh and var.exists():
        shutil.rmtree(var)
    var.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "driftboard.settings",
            "DRIFTBOARD_EMBEDDED": "1",
            "DRIFTBOARD_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'profile.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "DRIFTBOARD_ARTIFACT_ROOT": str(var / "artifacts"),
            "DRIFTBOARD_IMPORT_ROOTS": str(workdir / "models"),
            "DRIFTBOARD_PRICES": "",
            "LOG_LEVEL": "ERROR",
        }
    )


def register_and_score(folder: Path, label: str, parent_version: int | None = None) -> tuple[object, float]:
    """Register the weights as the family's next version and process its runs as a worker does, until
    none waits; returns the artifact (with its verdict) and the seconds from registration to verdict."""
    from evals.models import EvalRun
    from evals.services import eval_runs_dispatch, pipeline
    from registry.models import Artifact, ModelFamily

    family = ModelFamily.objects.get(slug=FAMILY)
    parent = Artifact.objects.filter(family=family, version=parent_version).first() if parent_version else None
    started = time.perf_counter()
    registration = pipeline.artifact_submit(
        family=family, commit_sha=commit_of(label), branch="main", path=str(folder), parent=parent
    )
    while True:
        eval_runs_dispatch()
        queued = EvalRun.objects.filter(status=EvalRun.Status.QUEUED).order_by("enqueued_at", "id").first()
        if queued is None:
            break
        pipeline.eval_run_process(run_id=queued.pk, worker="bench-profile")
    seconds = time.perf_counter() - started
    artifact = Artifact.objects.get(pk=registration.artifact.pk)
    failed = EvalRun.objects.filter(artifact=artifact).exclude(status=EvalRun.Status.SUCCEEDED)
    if failed.exists():
        raise SystemExit(f"{label}: runs did not succeed: {list(failed.values_list('status', 'error'))}")
    return artifact, seconds


def commit_of(label: str) -> str:
    import hashlib

    return hashlib.sha1(f"profile {label}".encode()).hexdigest()


def register_child(args: argparse.Namespace) -> None:
    """A fresh process that registers a candidate and scores it to its verdict (a cold worker)."""
    configure_django(Path(args.workdir), fresh=False)
    import django

    django.setup()
    from django.conf import settings

    settings.DRIFTBOARD_IMPORT_ROOTS = [Path(args.workdir) / "models"]
    artifact, seconds = register_and_score(Path(args.folder), args.label, parent_version=1)
    print(json.dumps({"verdict": artifact.drift_flag, "status": artifact.status, "seconds": seconds}))


FAMILY = "profile-answers"
DATASET = "profile-prompts"


def main() -> int:
    args = arguments()
    if args.child == "harness":
        harness_child(args)
        return 0
    if args.child == "register":
        register_child(args)
        return 0
    if args.child == "evaluate":
        evaluate_child(args)
        return 0
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="driftboard-profile-"))).resolve()
    configure_django(workdir, fresh=True)
    import django

    django.setup()
    bench = Bench(args, workdir)
    for part in ("worker", "evaluate", "verdict") if args.part == "all" else (args.part,):
        getattr(bench, part)()
    if args.workdir is None:
        shutil.rmtree(workdir)
    return 0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "worker", "evaluate", "verdict"), default="all")
    parser.add_argument("--workdir", type=Path, help="kept between runs: demo models, candidates, prompts")
    parser.add_argument("--model", type=Path, help="a demo base folder with golden.jsonl in its parent folder")
    parser.add_argument("--prompts", type=int, default=240)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--noise", type=float, default=0.01, help="the candidates' weight noise (default 1 %%)")
    parser.add_argument("--turns", type=int, default=2, help="verdict: turns of each side")
    parser.add_argument("--lm-eval-batch-sizes", type=int, nargs="+", default=[16, 64, 240])
    parser.add_argument("--cprofile", type=int, default=0, help="worker: print the N costliest functions")
    parser.add_argument("--child", choices=("harness", "register", "evaluate"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", help=argparse.SUPPRESS)
    parser.add_argument("--answers-file", help=argparse.SUPPRESS)
    parser.add_argument("--evaluate-args", help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        from django.conf import settings
        from django.core.management import call_command

        from evals.services.demo import demo_embedder

        self.args, self.workdir = args, workdir
        self.models = workdir / "models"
        self.models.mkdir(parents=True, exist_ok=True)
        call_command("migrate", verbosity=0)
        settings.DRIFTBOARD_IMPORT_ROOTS = [self.models]
        settings.DRIFTBOARD_MODEL_ROOTS = [self.models, demo_embedder().resolve().parent]
        self.embedder = demo_embedder()
        self.base, golden = self.demo_base()
        self.samples = self.golden_samples(golden)
        self.golden_file = workdir / "prompts.jsonl"
        self.golden_file.write_text("".join(json.dumps(sample) + "\n" for sample in self.samples))
        self.seeds = iter(range(1, 1000))
        self.family_with_baseline()

    def demo_base(self) -> tuple[Path, Path]:
        """The demo base folder (copied under the import root) and the demo golden file."""
        from evals.scoring.demo_models import build_demo_models

        if self.args.model:
            source, golden = self.args.model, self.args.model.parent / "golden.jsonl"
        else:
            demo = self.workdir / "demo"
            if not (demo / "BUILT").exists():
                print("building the demo models (once per work folder)…", file=sys.stderr, flush=True)
                build_demo_models(demo, preset="demo", log=lambda _line: None)
                (demo / "BUILT").write_text("ok")
            source, golden = demo / "base", demo / "golden.jsonl"
        target = self.models / "base"
        if not target.exists():
            shutil.copytree(source, target)
        return target, golden

    def golden_samples(self, golden: Path) -> list[dict]:
        """`--prompts` prompts: the first 8 to 30 words of a demo passage, the next 30 words the reference."""
        texts = [json.loads(line)["text"] for line in golden.read_text().splitlines()]
        samples = []
        for index in range(self.args.prompts):
            words = texts[index % len(texts)].split()
            cut = min(8 + (index * 7) % 23, max(1, len(words) - 2))
            prompt, reference = " ".join(words[:cut]), " ".join(words[cut : cut + 30]) or words[-1]
            samples.append(
                {"id": f"p{index}", "text": f"{prompt} {reference}", "prompt": prompt, "reference": reference}
            )
        return samples

    def near_copy(self) -> tuple[Path, str]:
        """The base weights plus `--noise` Gaussian noise (each tensor scaled by its spread), a new seed each."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        seed = next(self.seeds)
        label = f"noise-{self.args.noise:g}-seed-{seed}"
        target = self.models / label
        if not target.exists():
            model = AutoModelForCausalLM.from_pretrained(self.base)
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.numel() > 1:
                        noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                        parameter.add_(noise * parameter.std() * self.args.noise)
            model.save_pretrained(target)
            AutoTokenizer.from_pretrained(self.base).save_pretrained(target)
        return target, label

    def family_with_baseline(self) -> None:
        """The family (answer scorers only, every sample scored) and its first version scored: the
        production baseline, its answers stored."""
        from evals.services import pipeline
        from evals.services.datasets import dataset_import
        from registry.models import ModelFamily

        if ModelFamily.objects.filter(slug=FAMILY).exists():
            return
        dataset_import(name=DATASET, filename=self.golden_file.name, source=self.golden_file)
        pipeline.family_create(
            slug=FAMILY,
            kind=ModelFamily.Kind.CAUSAL_LM,
            base_path=str(self.base),
            datasets=[DATASET],
            scorers=["answer-checks", "answer-similarity"],
            sampling="full",
            generation={"max_new_tokens": self.args.max_new_tokens, "embedder": str(self.embedder)},
        )
        started = time.perf_counter()
        artifact, _ = register_and_score(self.base, "base")
        print(
            f"baseline v{artifact.version} scored in {time.perf_counter() - started:.1f} s ({artifact.status})",
            file=sys.stderr,
            flush=True,
        )

    # ------------------------------------------------------------ part 1: the worker's scoring run

    def worker(self) -> None:
        from evals.scoring import embedding
        from evals.scoring.loading import MODEL_CACHE

        phases, counts = self.instrumented()
        for title, cold in (("a worker that has just started", True), ("a warm worker (the next candidate)", False)):
            if cold:
                MODEL_CACHE.clear()
                embedding.EMBEDDING_CACHE.clear()
            folder, label = self.near_copy()
            before = counts()
            phases.reset()
            profiler = self.profiler() if self.args.cprofile and not cold else None
            artifact, seconds = register_and_score(folder, label, parent_version=1)
            if profiler is not None:
                profiler.disable()
            done = {name: value - before[name] for name, value in counts().items()}
            print(
                phases.table(
                    f"Worker scoring run of a {self.args.noise:.0%} near-copy, {title}: registration to verdict "
                    f"{seconds:.2f} s ({len(self.samples)} prompts × {self.args.max_new_tokens} new tokens; "
                    f"verdict {artifact.drift_flag or '—'}; load average {load_average()})",
                    WORKER_PHASES,
                    total=seconds,
                )
            )
            print("\n" + ", ".join(f"{name}: {value:,}" for name, value in done.items()))
            if profiler is not None:
                self.print_profile(profiler)

    def instrumented(self):
        """Phase timers on the worker's path, and the counters of what it computed."""
        from evals.scoring import answers, embedding, loading
        from evals.scoring.generation import batched, cached, steps
        from evals.scoring.scorers import generated_answers
        from evals.services import engine, pipeline, runs

        phases = Phases(rest="claiming, archiving and bookkeeping (Django)")
        phases.timed(pipeline, "artifact_submit", "registering (hashing the weights)")
        phases.timed(engine, "load_model", "loading the candidate")
        phases.timed(generated_answers.AnswerSimilarity, "embedder", "loading the embedder")
        phases.timed(engine.DatabaseDraftLookup, "__call__", "finding drafts (database)")
        phases.timed(batched, "prompt_token_ids", "tokenising prompts and drafts")
        phases.timed(steps.Decoder, "draft_ids", "tokenising prompts and drafts")
        phases.timed(cached, "generate", "generating (drafted, with the audit)")
        phases.timed(answers, "score_similarity", "embedding answers and references")
        for store in (engine.DatabaseGenerationStore, engine.DatabaseResultStore):
            phases.timed(store, "get_many", "reading cached answers and results")
            phases.timed(store, "put_many", "storing answers and results")
        phases.timed(engine, "run_fingerprints", "fingerprints")
        phases.timed(runs, "snapshots_save", "saving snapshots")
        phases.timed(pipeline, "run_finished", "the verdict")
        forward = {"passes": 0}
        original_forward = steps.Decoder.step_logits

        def counted(self, *args, **kwargs):
            forward["passes"] += 1
            return original_forward(self, *args, **kwargs)

        steps.Decoder.step_logits = counted

        def counts() -> dict[str, int]:
            return {
                "generation forward passes": forward["passes"],
                "texts embedded": embedding.EMBEDDING_CACHE.computed,
                "embeddings reused": embedding.EMBEDDING_CACHE.reused,
                "models read from disk": loading.MODEL_CACHE.loads_from_disk,
            }

        return phases, counts

    def profiler(self):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        return profiler

    def print_profile(self, profiler) -> None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(self.args.cprofile)
        print(out.getvalue())

    # ------------------------------------------------------------ part 2: a whole `manage.py evaluate --generate`

    def evaluate(self) -> None:
        folder, _ = self.near_copy()
        command = [
            "evaluate",
            "--weights",
            str(folder),
            "--subset",
            str(self.golden_file),
            "--generate",
            "--max-new-tokens",
            str(self.args.max_new_tokens),
            "--embedder",
            str(self.embedder),
            "--device",
            "cpu",
            "--json",
        ]
        env = {**os.environ, "DRIFTBOARD_VAR_DIR": str(self.workdir / "var-evaluate")}
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--child", "evaluate", "--evaluate-args", json.dumps(command)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        phases = Phases(rest="the report")
        for name, seconds in measured["phases"].items():
            phases.add(name, seconds)
        phases.add("interpreter start", measured["interpreter"])
        phases.add("process exit", max(0.0, wall - measured["interpreter"] - sum(measured["phases"].values())))
        print(
            phases.table(
                f"A whole `manage.py evaluate --generate` process: a {self.args.noise:.0%} near-copy, "
                f"{len(self.samples)} prompts × {self.args.max_new_tokens} new tokens, answer checks "
                f"and similarity ({wall:.2f} s as measured from outside; load average {load_average()})",
                EVALUATE_PHASES,
                total=wall,
            )
        )
        started = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, check=True)
        print(f"\nthe same command, bare: {time.perf_counter() - started:.2f} s (load average {load_average()})")

    # ------------------------------------------------------------ part 3: registration to verdict vs the harness

    def verdict(self) -> None:
        prompts = [sample["prompt"] for sample in self.samples]
        prompts_file = self.workdir / "prompts.json"
        prompts_file.write_text(json.dumps(prompts))
        rows: dict[str, list[float]] = defaultdict(list)
        loads: dict[str, list[str]] = defaultdict(list)
        checks: list[tuple[Path, list[str] | None]] = []
        for turn in range(self.args.turns):
            # Each Driftboard side scores a new near-copy (nothing of it cached); the harness answers the
            # warm side's copy of the turn, whose stored answers are checked against the harness's.
            cold, cold_label = self.near_copy()
            warm, warm_label = self.near_copy()
            sides = ["cold", "warm", *self.args.lm_eval_batch_sizes]
            harness: list[str] | None = None
            for side in sides[turn % len(sides) :] + sides[: turn % len(sides)]:
                started = time.perf_counter()
                if side == "warm":
                    register_and_score(warm, warm_label, parent_version=1)
                    name = "Driftboard, a warm worker: registration → verdict"
                elif side == "cold":
                    self.child(["--child", "register", "--workdir", str(self.workdir)], cold, cold_label)
                    name = "Driftboard, a fresh process: start, registration → verdict"
                else:
                    answers_file = self.workdir / f"harness-{side}.json"
                    self.child(
                        ["--child", "harness", "--batch-size", str(side), "--prompts-file", str(prompts_file)]
                        + ["--answers-file", str(answers_file), "--max-new-tokens", str(self.args.max_new_tokens)],
                        warm,
                    )
                    name = f"lm-evaluation-harness, batch {side}: a whole process generating the answers"
                    harness = json.loads(answers_file.read_text())
                rows[name].append(time.perf_counter() - started)
                loads[name].append(load_average().split()[0])
            checks += [(warm, harness), (cold, None)]
        best = min(min(values) for name, values in rows.items() if name.startswith("lm-eval"))
        print(
            f"\nA {self.args.noise:.0%} near-copy's verdict on generation metrics vs lm-evaluation-harness generating "
            f"the same {len(prompts)} answers ({self.args.max_new_tokens} new tokens, greedy), whole-process wall "
            f"time, {self.args.turns} turns, the sides taking turns (each Driftboard side a new near-copy)\n"
        )
        print("| side | seconds (each turn) | best | the harness's best ÷ this | load average (1 min) |")
        print("|---|---|--:|--:|---|")
        for name, values in rows.items():
            print(
                f"| {name} | {' / '.join(f'{value:.2f}' for value in values)} | {min(values):.2f} "
                f"| {best / min(values):.2f}× | {' / '.join(loads[name])} |"
            )
        equal, total = self.stored_answers_checked(checks)
        print(
            f"\nstored answers equal to greedy decoding of the same weights (lm-evaluation-harness's answers for the "
            f"warm side's copies, this engine's plain decoding for the fresh process's): {equal} / {total}"
        )

    def child(self, arguments: list[str], folder: Path, label: str | None = None) -> None:
        command = [sys.executable, __file__, *arguments, "--folder", str(folder)]
        subprocess.run([*command, *(["--label", label] if label else [])], capture_output=True, text=True, check=True)

    def stored_answers_checked(self, checks: list[tuple[Path, list[str] | None]]) -> tuple[int, int]:
        from evals.models import Generation
        from evals.scoring.generation import GenerationSettings, generate, generation_keys
        from evals.scoring.loading import load_model

        settings = GenerationSettings(max_new_tokens=self.args.max_new_tokens)
        prompts = [sample["prompt"] for sample in self.samples]
        equal = total = 0
        for folder, expected in checks:
            lm = load_model(folder, device="cpu")
            keys = generation_keys(lm, prompts, settings)
            stored = dict(
                Generation.objects.filter(
                    weights_sha256=lm.weights_sha256, prompt_sha256__in=[key.prompt_sha256 for key in keys]
                ).values_list("prompt_sha256", "text")
            )
            greedy = expected if expected is not None else generate(lm, prompts, settings).texts
            equal += sum(stored.get(key.prompt_sha256) == text for key, text in zip(keys, greedy, strict=True))
            total += len(keys)
        return equal, total


WORKER_PHASES = [
    "registering (hashing the weights)",
    "loading the candidate",
    "loading the embedder",
    "finding drafts (database)",
    "tokenising prompts and drafts",
    "generating (drafted, with the audit)",
    "embedding answers and references",
    "reading cached answers and results",
    "storing answers and results",
    "fingerprints",
    "saving snapshots",
    "the verdict",
    "claiming, archiving and bookkeeping (Django)",
]
EVALUATE_PHASES = [
    "interpreter start",
    "imports",
    "Django set-up (with the apps' imports)",
    "model loads",
    "tokenising prompts",
    "generating",
    "embedding answers and references",
    "the report",
    "process exit",
]


def evaluate_child(args: argparse.Namespace) -> None:
    """`manage.py evaluate` in this process, its phases timed: what `python manage.py evaluate …` runs."""
    interpreter = STARTED - process_started()
    phases = Phases(rest="the report")
    phases.enter("imports")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "driftboard.settings")
    import django
    from django.core.management import call_command

    phases.leave()
    phases.enter("Django set-up (with the apps' imports)")
    django.setup()
    phases.leave()
    phases.enter("imports")
    from evals.management.commands import evaluate
    from evals.scoring import answers, loading
    from evals.scoring.generation import batched, cached

    phases.leave()
    phases.timed(loading, "load_model", "model loads")
    phases.timed(evaluate, "load_model", "model loads")
    phases.timed(batched, "prompt_token_ids", "tokenising prompts")
    phases.timed(cached, "generate", "generating")
    phases.timed(answers, "score_similarity", "embedding answers and references")
    command = json.loads(args.evaluate_args)
    with open(os.devnull, "w") as sink:
        call_command(*command, stdout=sink, stderr=sink)
    phases._switch()
    print(json.dumps({"interpreter": interpreter, "phases": dict(phases.seconds)}))


if __name__ == "__main__":
    sys.exit(main())
