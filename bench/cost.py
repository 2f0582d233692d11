"""What a family's evaluation costs with sequential sampling, the score caches and drafted answers on, and
with all three off.

Run: python bench/cost.py [--part all|answers|likelihood] [--versions 4] [--gpu-hour-price 3.5]
                          [--currency USD] [--workdir DIR]

It builds the small demo models (preset "test", once per work folder: `--workdir` keeps them) and, for
each part, registers a family's run of `--versions` weight versions through the real pipeline twice, on
a fresh SQLite database each time: once with everything on — sequential sampling, the score caches and
drafted generation — and once with everything off: sampling off (every sample scored), the cache tables
emptied before each run (a fresh cache: no per-sample result, answer or draft to reuse, so no drafts).
Part `answers` is the demo family as `make run` sets it up (bits per byte on the 278 golden passages, two
answer scorers on the 109 prompts, 24 new tokens; its thresholds); part `likelihood` scores bits per byte
alone. Answers are generated once per run for both answer scorers, in both modes.

The versions follow a plausible lineage: v1 the base (the first baseline), v2 the improved model, v3 the
same weights as v2 under a new commit (a rebased pull request), v4 the drifted model, then copies of the
improved model with every weight nudged by its own seed (fine-tunes that barely moved). Each run is
processed in this process exactly as a scoring worker processes it (`pipeline.eval_run_process`: claim,
score, archive, record usage, verdict, promotion); with sampling on, the completion runs that score the
rest of an early-stopped golden set off-peak are processed too, and counted on their own row.

Reported per mode, from the usage each run recorded (`EvalRun.usage`): worker-seconds, forward passes,
tokens scored and generated, the samples computed of those a full evaluation computes, draft tokens
accepted, the money at `--gpu-hour-price` per worker-hour (priced as DRIFTBOARD_PRICES prices usage), and
the saving as a ratio and a share; then per version its verdict in both modes (they must agree), what
sampling did, and its samples and worker-seconds in both modes. Forward passes, tokens and samples are
exact; worker-seconds are wall time and move with whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PARTS = {"answers": "bits per byte and answers (the demo family)", "likelihood": "bits per byte only"}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=4, help="weight versions of the family (default 4)")
    parser.add_argument("--gpu-hour-price", type=float, default=3.5, help="price of a worker-hour (default 3.5)")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--part", choices=("all", *PARTS), default="all")
    parser.add_argument("--workdir", type=Path, default=None, help="kept between runs (the demo models are reused)")
    return parser.parse_args()


def configure(args: argparse.Namespace) -> Path:
    """Point Django at a private var folder and database; weights are registered from the work folder."""
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="driftboard-cost-"))).resolve()
    var = workdir / "var"
    if var.exists():
        shutil.rmtree(var)
    (workdir / "models").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "driftboard.settings",
            "DRIFTBOARD_EMBEDDED": "1",
            "DRIFTBOARD_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'cost.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "DRIFTBOARD_ARTIFACT_ROOT": str(var / "artifacts"),
            "DRIFTBOARD_IMPORT_ROOTS": str(workdir / "models"),
            "DRIFTBOARD_PRICES": "",
            "LOG_LEVEL": "ERROR",
        }
    )
    return workdir


ARGS = arguments()
WORKDIR = configure(ARGS)

import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from driftboard.prices import Prices  # noqa: E402
from evals.costs import runs_cost  # noqa: E402
from evals.models import EvalRun, Generation, SampleResult  # noqa: E402
from evals.run_kinds import GATING_KINDS  # noqa: E402
from evals.scoring.demo_models import DemoBuild, build_demo_models  # noqa: E402
from evals.scoring.loading import MODEL_CACHE  # noqa: E402
from evals.services import eval_runs_dispatch, pipeline  # noqa: E402
from evals.services.demo import demo_embedder, demo_family  # noqa: E402
from evals.services.profiles import evaluation_profile_update  # noqa: E402
from registry.models import Artifact, ModelFamily  # noqa: E402

WORKER = "bench-cost"
NUDGE = 1e-4


@dataclass(frozen=True)
class Version:
    source: str  # base | improved | drifted
    note: str
    nudge_seed: int | None = None  # a copy with its weights nudged by this seed


def lineage(count: int) -> list[Version]:
    first = [
        Version("base", "base (first baseline)"),
        Version("improved", "improved"),
        Version("improved", "v2's weights, new commit"),
        Version("drifted", "drifted"),
    ]
    nudged = [Version("improved", f"improved, nudged (seed {i})", nudge_seed=i) for i in range(count)]
    return (first + nudged)[:count]


def nudged_copy(source: Path, target: Path, seed: int) -> Path:
    """The model folder with every float tensor nudged by 1e-4·N(0, 1): new weights, nearly the same answers."""
    if not target.exists():
        shutil.copytree(source, target)
        generator = torch.Generator().manual_seed(seed)
        state = load_file(target / "model.safetensors")
        nudged = {
            name: tensor + NUDGE * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
            if tensor.is_floating_point()
            else tensor
            for name, tensor in state.items()
        }
        save_file(nudged, target / "model.safetensors", metadata={"format": "pt"})
    return target


def version_folders(build: DemoBuild, versions: list[Version]) -> list[Path]:
    """The folder each version registers; the demo models are copied under the import root once."""
    models = WORKDIR / "models"
    for name in ("base", "improved", "drifted"):
        if not (models / name).exists():
            shutil.copytree(getattr(build, name), models / name)
    return [
        models / version.source
        if version.nudge_seed is None
        else nudged_copy(
            models / version.source, models / f"{version.source}-nudged-{version.nudge_seed}", version.nudge_seed
        )
        for version in versions
    ]


def demo_build() -> DemoBuild:
    folder = WORKDIR / "demo"
    if not (folder / "BUILT").exists():
        build_demo_models(folder, preset="test", log=lambda _line: None)
        (folder / "BUILT").write_text("ok")
    return DemoBuild(folder / "base", folder / "improved", folder / "drifted", folder / "golden.jsonl", {})


def caches_empty() -> None:
    """A fresh cache: no per-sample result, stored answer (nor so any draft) to reuse."""
    SampleResult.objects.all().delete()
    Generation.objects.all().delete()


def process_all(*, fresh_caches: bool) -> None:
    """Dispatch and process runs, one at a time as a worker takes them, until none waits."""
    while True:
        eval_runs_dispatch()
        queued = EvalRun.objects.filter(status=EvalRun.Status.QUEUED).order_by("enqueued_at", "id").first()
        if queued is None:
            return
        if fresh_caches:
            caches_empty()
        pipeline.eval_run_process(run_id=queued.pk, worker=WORKER)


def family_scored(build: DemoBuild, folders: list[Path], *, part: str, everything_on: bool) -> ModelFamily:
    """A fresh database, the demo family, and every version registered and scored in turn."""
    call_command("flush", interactive=False, verbosity=0)
    MODEL_CACHE.clear()
    family = demo_family(build)
    scorers = ["causal-nll"] if part == "likelihood" else family.evaluation.scorers
    evaluation_profile_update(family=family, scorers=scorers, sampling="sequential" if everything_on else "full")
    parent = None
    for index, folder in enumerate(folders):
        commit = hashlib.sha1(f"cost bench v{index + 1}".encode()).hexdigest()
        registration = pipeline.artifact_submit(
            family=family, commit_sha=commit, branch="main", path=str(folder), parent=parent
        )
        parent = parent or registration.artifact
        process_all(fresh_caches=not everything_on)
    return family


@dataclass(frozen=True)
class Totals:
    worker_seconds: float
    forward_passes: int
    tokens_scored: int
    tokens_generated: int
    samples_computed: int
    samples_full: int
    draft_accepted: int
    amount: float


def totals(runs: list[EvalRun]) -> Totals:
    cost = runs_cost(runs)
    usages = [run.usage_record for run in runs]
    return Totals(
        worker_seconds=cost.worker_seconds,
        forward_passes=cost.forward_passes,
        tokens_scored=sum(usage.tokens_scored for usage in usages),
        tokens_generated=cost.tokens_generated,
        # Cached results are counted per scorer and sample (likelihood and two answer scorers: up to 496 of
        # 278 samples); a run here reuses all of its results or none.
        samples_computed=sum(max(0, usage.samples_computed) for usage in usages),
        samples_full=sum(usage.samples_full for usage in usages),
        draft_accepted=sum(int(run.drafting.get("accepted_tokens", 0)) for run in runs),
        amount=cost.amount,
    )


@dataclass(frozen=True)
class Mode:
    verdict_runs: list[EvalRun]  # the runs that gate the versions
    all_runs: list[EvalRun]  # with the completion runs
    flags: list[str]
    per_version: list[Totals]  # each version's runs, completion runs included
    per_verdict: list[Totals]  # each version's gating runs
    sampled: list[str]  # what sequential sampling did on each version's gating run


def mode_measured(family: ModelFamily) -> Mode:
    runs = list(EvalRun.objects.filter(artifact__family=family).select_related("artifact").order_by("id"))
    failed = [run for run in runs if run.status != EvalRun.Status.SUCCEEDED]
    if failed:
        raise SystemExit(f"runs did not succeed: {[(run.pk, run.status, run.error) for run in failed]}")
    artifacts = list(Artifact.objects.filter(family=family).order_by("version"))
    gating = [run for run in runs if run.kind in GATING_KINDS]
    return Mode(
        verdict_runs=gating,
        all_runs=runs,
        flags=[artifact.drift_flag or "—" for artifact in artifacts],
        per_version=[totals([run for run in runs if run.artifact_id == artifact.pk]) for artifact in artifacts],
        per_verdict=[totals([run for run in gating if run.artifact_id == artifact.pk]) for artifact in artifacts],
        sampled=[_sampled(next(run for run in gating if run.artifact_id == a.pk)) for a in artifacts],
    )


def _sampled(run: EvalRun) -> str:
    sampling = run.sampling_record
    if sampling.mode != "sequential":
        return "off"
    if sampling.disabled:
        return f"full set ({sampling.disabled.split(':')[0].rstrip('.')})"
    return f"{sampling.samples_used} of {sampling.samples_total}" + (
        " (stopped early)" if sampling.stopped_early else ""
    )


COLUMNS = (
    ("worker-seconds", lambda t: t.worker_seconds, "{:,.1f}"),
    ("forward passes", lambda t: t.forward_passes, "{:,}"),
    ("tokens scored", lambda t: t.tokens_scored, "{:,}"),
    ("tokens generated", lambda t: t.tokens_generated, "{:,}"),
    ("samples computed", lambda t: t.samples_computed, "{:,}"),
)


def table(off: Mode, on: Mode, versions: list[Version], currency: str) -> str:
    rows = [
        ("everything off", totals(off.all_runs)),
        ("sampling, caches, drafts: to the verdicts", totals(on.verdict_runs)),
    ]
    savings = [("saving to the verdicts", rows[1][1])]
    if len(on.all_runs) > len(on.verdict_runs):
        rows.append(("… with the off-peak completion runs", totals(on.all_runs)))
        savings.append(("saving, completion runs included", rows[2][1]))
    header = [
        "mode",
        *(name for name, _, _ in COLUMNS),
        "draft tokens accepted",
        f"{currency} at {ARGS.gpu_hour_price:g}/h",
    ]
    lines = [_row(header), _row(["---"] + ["--:"] * (len(header) - 1))]
    for name, t in rows:
        cells = [fmt.format(value(t)) for _, value, fmt in COLUMNS]
        cells[-1] += f" of {t.samples_full:,}"
        lines.append(_row([name, *cells, f"{t.draft_accepted:,}", f"{t.amount:.4f}"]))
    everything_off = rows[0][1]
    for name, t in savings:
        saved = [_saving(value(everything_off), value(t)) for _, value, _ in COLUMNS]
        lines.append(_row([name, *saved, "", _saving(everything_off.amount, t.amount)]))
    lines += [
        "",
        _row(
            [
                "version",
                "weights",
                "verdict off / on",
                "sampling (on)",
                "samples computed off → on",
                "worker-seconds off → on",
            ]
        ),
    ]
    lines.append(_row(["--:", "---", "---", "---", "--:", "--:"]))
    for index, version in enumerate(versions):
        a, b, verdict = off.per_version[index], on.per_version[index], on.per_verdict[index]
        off_peak = b.samples_computed - verdict.samples_computed
        lines.append(
            _row(
                [
                    f"v{index + 1}",
                    version.note,
                    f"{off.flags[index]} / {on.flags[index]}",
                    on.sampled[index],
                    f"{a.samples_computed} → {verdict.samples_computed}"
                    + (f" (+{off_peak} off-peak)" if off_peak else ""),
                    f"{a.worker_seconds:.1f} → {verdict.worker_seconds:.1f}"
                    + (f" (+{b.worker_seconds - verdict.worker_seconds:.1f})" if off_peak else ""),
                ]
            )
        )
    return "\n".join(lines)


def _saving(before: float, after: float) -> str:
    if not before:
        return "—"
    ratio = f"{before / after:.2f}×" if after else "∞"
    return f"{ratio} ({1 - after / before:.0%})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def part_measured(build: DemoBuild, folders: list[Path], versions: list[Version], part: str) -> None:
    started = time.perf_counter()
    # Everything on first: whatever the process warms up (imports, kernels) favours the mode measured second.
    on = mode_measured(family_scored(build, folders, part=part, everything_on=True))
    off = mode_measured(family_scored(build, folders, part=part, everything_on=False))
    print(f"\n{PARTS[part]}, {len(versions)} versions ({time.perf_counter() - started:.0f} s)\n")
    print(table(off, on, versions, ARGS.currency))
    if off.flags != on.flags:
        print("\nTHE VERDICTS DIFFER between the modes.")


def main() -> int:
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    settings.DRIFTBOARD_IMPORT_ROOTS = [WORKDIR / "models"]
    settings.DRIFTBOARD_MODEL_ROOTS = [WORKDIR / "models", demo_embedder().resolve().parent]
    # Any device's worker-hour at the price given (what `runs_cost` prices the runs' usage with).
    settings.DRIFTBOARD_PRICES = Prices(currency=ARGS.currency, gpu_hour={"*": ARGS.gpu_hour_price})
    build = demo_build()
    versions = lineage(ARGS.versions)
    folders = version_folders(build, versions)
    print(f"demo models ready after {time.perf_counter() - started:.0f} s", flush=True)
    for part in PARTS if ARGS.part == "all" else (ARGS.part,):
        part_measured(build, folders, versions, part)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if ARGS.workdir is None:
        shutil.rmtree(WORKDIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
