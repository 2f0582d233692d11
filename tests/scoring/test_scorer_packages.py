"""A scorer shipped as its own package (entry point `driftboard.scorers`), written with the public
`answer_scorer` API: installed with pip into a folder of its own, it runs through `manage.py evaluate
--generate --scorers … --scorer-options …` and through a family on a real worker, its option checked
from its declaration; its count metric, 0 on the baseline, gets a real verdict (absolute deltas).
A broken or clashing plug-in is named by the system check and loses nothing else."""

import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from evals.models import DriftVerdict, MetricSnapshot, Threshold
from evals.scoring.generation import GenerationSettings, generate
from evals.scoring.loading import load_model
from evals.scoring.scorers import METRICS, SCORERS
from evals.scoring.scorers.plugins import load_plugins
from evals.services import dataset_import
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from tests.pipeline.test_worker_pipeline import register, settled

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parent
MAX_NEW_TOKENS = 12


def pip_install(source: Path, target: Path) -> Path:
    """`pip install` the plug-in's source (copied, so the build leaves nothing in the tree) into `target`."""
    build = target.parent / f"{source.name}-src"
    shutil.copytree(source, build, dirs_exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation"]
        + ["--target", str(target), str(build)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def flagged_words_site(tmp_path_factory) -> Path:
    return pip_install(PLUGINS / "flagged_words_plugin", tmp_path_factory.mktemp("site") / "packages")


@pytest.fixture
def flagged_words_here(flagged_words_site):
    """The plug-in installed in this process too (the API validates family options from it)."""
    sys.path.insert(0, str(flagged_words_site))
    load_plugins()
    yield SCORERS["flagged-words"]
    sys.path.remove(str(flagged_words_site))
    del SCORERS["flagged-words"], METRICS["flagged_words"]
    sys.modules.pop("driftboard_flagged_words", None)


def manage(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DRIFTBOARD_EMBEDDED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("DRIFTBOARD_EMBEDDER", "DRIFTBOARD_JUDGE_URL", "DRIFTBOARD_JUDGE_MODEL"):
        environment.pop(name, None)
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def answers(demo_build) -> dict:
    """Prompts without references, the base and drifted models' greedy answers, and a word only the
    drifted model says (the ground truth the scorer's counts are checked against)."""
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    prompts = [row["prompt"] for row in rows if row.get("prompt")][:16]
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    base = generate(load_model(demo_build.base, kind="causal-lm"), prompts, settings).texts
    drifted = generate(load_model(demo_build.drifted, kind="causal-lm"), prompts, settings).texts
    said_by_base = {word for text in base for word in text.lower().split()}
    only_drifted = Counter(word for text in drifted for word in text.lower().split() if word not in said_by_base)
    assert only_drifted, "the drifted model should say words the base model never says"
    return {"prompts": prompts, "base": base, "drifted": drifted, "words": sorted(only_drifted)}


def count(texts: list[str], words: list[str]) -> list[float]:
    return [float(sum(token in words for token in text.lower().split())) for text in texts]


@pytest.fixture
def prompt_file(answers, tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"p{i}", "prompt": p}) for i, p in enumerate(answers["prompts"])))
    return path


def test_it_runs_an_installed_scorer_from_the_cli_with_its_option(flagged_words_site, demo_build, answers, prompt_file):
    words = answers["words"]
    result = manage(
        "evaluate",
        "--weights",
        str(demo_build.drifted),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--scorers",
        "flagged-words",
        "--scorer-options",
        json.dumps({"flagged-words": {"words": words}}),
        "--baseline",
        str(demo_build.base),
        "--json",
        pythonpath=flagged_words_site,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    generated = [row["text"] for row in report["generations"]]
    assert generated == answers["drifted"]  # no reference needed: the scorer reads only the prompt
    expected = count(generated, words)
    assert report["metrics"]["flagged_words"] == pytest.approx(sum(expected) / len(expected))
    comparison = report["comparison"]["flagged_words"]
    assert comparison["baseline"] == 0.0 and comparison["delta"] == pytest.approx(-sum(expected) / len(expected))
    assert comparison["ci_high"] <= 0.0 <= comparison["candidate"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"flagged-words": {"wordz": ["x"]}}, "wordz"),
        ({"flagged-words": {"words": "damn"}}, "must be of type list"),
        ({"answer-checks": {}}, "not run"),
    ],
)
def test_it_refuses_a_bad_option_by_name_before_loading_a_model(
    flagged_words_site, demo_build, prompt_file, options, named
):
    result = manage(
        "evaluate",
        "--weights",
        str(demo_build.drifted),
        "--subset",
        str(prompt_file),
        "--generate",
        "--scorers",
        "flagged-words",
        "--scorer-options",
        json.dumps(options),
        pythonpath=flagged_words_site,
    )
    assert result.returncode != 0 and named in result.stderr and "Traceback" not in result.stderr


def test_it_refuses_samples_without_a_reference_only_for_scorers_that_read_one(demo_build, prompt_file):
    result = manage(
        "evaluate", "--weights", str(demo_build.drifted), "--subset", str(prompt_file), "--generate", "--json"
    )
    assert result.returncode != 0
    assert "no reference, which the answer-checks scorer reads" in result.stderr


def test_a_broken_or_clashing_plugin_is_named_by_the_system_check(tmp_path):
    site = pip_install(PLUGINS / "broken_plugin", tmp_path / "packages")
    result = manage("check", pythonpath=site)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "evals.E001" in result.stderr
    assert "'clashing'" in result.stderr and "registered twice" in result.stderr
    assert "'missing'" in result.stderr and "ModuleNotFoundError" in result.stderr
    assert manage("check").returncode == 0


@pytest.mark.worker
def test_a_family_runs_the_installed_scorer_and_gates_a_count_that_was_0(
    celery_worker_factory,
    flagged_words_site,
    flagged_words_here,
    api_client,
    staff_client,
    demo_imports,
    answers,
    transactional_db,
):
    lines = [json.dumps({"id": f"p{i}", "prompt": prompt}) for i, prompt in enumerate(answers["prompts"])]
    dataset_import(name="flagged-golden", filename="flagged.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    words = answers["words"]
    response = staff_client.post(
        "/api/v1/families/",
        {
            "slug": "flagged",
            "kind": "causal-lm",
            "base_path": str(demo_imports["base"]),
            "datasets": ["flagged-golden"],
            "scorers": ["flagged-words"],
            "scorer_options": {"flagged-words": {"wordz": words}},
            "generation": {"max_new_tokens": MAX_NEW_TOKENS},
        },
        format="json",
    )
    assert response.status_code == 400 and "wordz" in str(response.json()["scorer_options"])
    family = family_create(
        slug="flagged",
        kind="causal-lm",
        base_path=str(demo_imports["base"]),
        datasets=["flagged-golden"],
        scorers=["flagged-words"],
        generation={"max_new_tokens": MAX_NEW_TOKENS},
    )
    patched = staff_client.patch(
        "/api/v1/families/flagged/", {"scorer_options": {"flagged-words": {"words": words}}}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["scorer_options"] == {"flagged-words": {"words": words}}
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="flagged_words",
            rule=Threshold.Rule.RELATIVE,
            limit=0.05,
            severity=Threshold.Severity.BLOCK,
            owner="tests",
            rationale="At most 0.05 more flagged words per answer.",
        ),
        user=None,
        reason="test",
    )
    celery_worker_factory(PYTHONPATH=str(flagged_words_site))

    base = settled(register(api_client, family, demo_imports["base"], "a" * 40))
    assert base.status == "promoted", list(base.runs.values_list("error", flat=True))
    assert MetricSnapshot.objects.get(artifact=base, metric="flagged_words").value == 0.0

    drifted = settled(register(api_client, family, demo_imports["drifted"], "b" * 40, branch="finetune"))
    expected = count(answers["drifted"], words)
    snapshot = MetricSnapshot.objects.get(artifact=drifted, metric="flagged_words")
    assert snapshot.value == pytest.approx(sum(expected) / len(expected))
    assert snapshot.fingerprint["settings"]["options"] == {"words": words}
    verdict = DriftVerdict.objects.get(artifact=drifted, metric="flagged_words")
    assert verdict.delta == pytest.approx(-snapshot.value)
    assert (verdict.outcome, drifted.status) == ("red", "halted"), verdict.reasons
    assert any("beyond the 0.05 block limit" in reason for reason in verdict.reasons), verdict.reasons
