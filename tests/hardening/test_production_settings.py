"""The production settings documented in docs/deploy.md pass `manage.py check --deploy` with no issue."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def documented_production_env() -> dict[str, str]:
    """The KEY=value lines of the first ```env block of the deployment guide."""
    block = re.search(r"```env\n(.*?)```", DEPLOY_DOC.read_text(), re.DOTALL)
    assert block, "docs/deploy.md has no ```env block"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # A clean environment: nothing of the test run (DJANGO_SETTINGS_MODULE, DRIFTBOARD_TESTING …) leaks in.
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_it_reports_no_issue_with_the_documented_production_settings(tmp_path):
    env = {
        **documented_production_env(),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DRIFTBOARD_VAR_DIR": str(tmp_path / "var"),
        "DRIFTBOARD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    assert env["DEBUG"] == "0"
    result = manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    env = {**documented_production_env(), "SECRET_KEY": "", "DRIFTBOARD_VAR_DIR": str(tmp_path / "var")}
    result = manage(["check"], env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_migrations_match_the_models_checked_without_any_configuration(tmp_path):
    # No SECRET_KEY and DEBUG off: comparing models with migrations signs nothing and needs no key.
    result = manage(["makemigrations", "--check", "--dry-run"], {"DRIFTBOARD_VAR_DIR": str(tmp_path / "var")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
