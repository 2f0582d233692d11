"""Every command that signs nothing runs in a bare shell (`env -i`): no SECRET_KEY, no DEBUG, no
database server, and nothing but its own output on stderr (no library warnings)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evals.scoring.hashing import weights_sha256
from tests.scoring.tiny_lm import write_lora_adapter

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT_RESULTS = ROOT / "tests" / "experiments" / "data" / "results.tsv"
# What a library prints when it warns: Python warnings, logging at WARNING, transformers' advice.
WARNING_SIGNS = re.compile(r"warn|deprecat|we strongly recommend|you may ignore", re.IGNORECASE)


def bare(*args: str, var_dir: Path) -> subprocess.CompletedProcess:
    """`env -i` with only PATH and HOME (and a var folder of the test's own, to leave the repo's alone)."""
    command = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={var_dir}", f"DRIFTBOARD_VAR_DIR={var_dir}"]
    return subprocess.run(
        [*command, sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def without_progress(stderr: str) -> str:
    """stderr less tqdm's progress bars (redrawn with carriage returns)."""
    return "\n".join(part for part in re.split(r"[\r\n]", stderr) if part and "sample/s" not in part)


def assert_quiet_success(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert not WARNING_SIGNS.search(result.stderr), result.stderr


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bare-var")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, var_dir) -> Path:
    folder = tmp_path_factory.mktemp("bare-demo")
    result = bare("build_demo_models", str(folder), "--preset", "test", var_dir=var_dir)
    assert_quiet_success(result)
    return folder


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, demo) -> Path:
    folder = tmp_path_factory.mktemp("bare-adapter") / "lora"
    return write_lora_adapter(folder, demo / "base", target_modules=["c_attn"], fan_in_fan_out=True)


def evaluate_json(*args: str, var_dir: Path) -> dict:
    result = bare("evaluate", *args, "--limit", "12", "--json", var_dir=var_dir)
    assert_quiet_success(result)
    assert without_progress(result.stderr) == ""
    return json.loads(result.stdout)


def test_evaluate_compares_two_models(demo, var_dir):
    report = evaluate_json(
        "--weights",
        str(demo / "drifted"),
        "--subset",
        str(demo / "golden.jsonl"),
        "--baseline",
        str(demo / "base"),
        var_dir=var_dir,
    )

    assert report["comparison"]["bits_per_byte"]["delta"] < 0


def test_evaluate_scores_an_adapter_over_its_base(demo, adapter, var_dir):
    golden, base = str(demo / "golden.jsonl"), demo / "base"
    with_base = evaluate_json(
        "--weights", str(adapter), "--base-dir", str(base), "--subset", golden, "--baseline", str(base), var_dir=var_dir
    )
    from_config = evaluate_json("--weights", str(adapter), "--subset", golden, var_dir=var_dir)

    assert with_base["metrics"] == from_config["metrics"]
    assert with_base["comparison"]["bits_per_byte"]["delta"] != 0
    assert with_base["fingerprint"]["base_sha256"] == weights_sha256(base)
    assert with_base["fingerprint"]["adapter_sha256"] == weights_sha256(adapter)


def test_evaluate_explains_an_adapter_without_a_base(tmp_path, adapter, demo, var_dir):
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    for file in adapter.iterdir():
        (orphan / file.name).write_bytes(file.read_bytes())
    config = json.loads((orphan / "adapter_config.json").read_text())
    (orphan / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "org/some-model"}))

    result = bare("evaluate", "--weights", str(orphan), "--subset", str(demo / "golden.jsonl"), var_dir=var_dir)

    assert result.returncode == 1
    assert "--base-dir or --family" in result.stderr and "Traceback" not in result.stderr


def test_migrate_and_the_import_commands_need_no_configuration(demo, var_dir):
    assert_quiet_success(bare("migrate", "--no-input", var_dir=var_dir))

    imported = bare("import_golden", "bare-golden", str(demo / "golden.jsonl"), var_dir=var_dir)
    assert_quiet_success(imported)
    assert "bare-golden v1" in imported.stdout
    assert_quiet_success(bare("import_results", "bare-experiment", str(EXPERIMENT_RESULTS), var_dir=var_dir))


def test_the_web_server_still_refuses_to_start_without_a_secret_key(var_dir):
    result = bare("check", var_dir=var_dir)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
