"""The ready CI steps (integrations/github/action.yml, integrations/gitlab/driftboard.gitlab-ci.yml), their
scripts run by bash exactly as the runners run them, against a live server."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from rest_framework.authtoken.models import Token

from registry.models import Artifact
from tests.client.test_client import COMMIT, score_in_steps
from tests.client.weights import write_safetensors
from tests.conftest import wait_for
from tests.factories import FamilyFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "integrations" / "github" / "action.yml"
GITLAB = ROOT / "integrations" / "gitlab" / "driftboard.gitlab-ci.yml"


@pytest.fixture
def server(live_server, transactional_db, settings):
    settings.DRIFTBOARD_PUBLIC_URL = live_server.url
    token, _ = Token.objects.get_or_create(user=UserFactory(username="ci"))
    return live_server.url, token.key


def github_step(server, tmp_path: Path, *, weights: Path, family: str, wait: str, fail_on: str) -> subprocess.Popen:
    """The action's step as GitHub runs it: its `env` with the inputs and a push event's context filled in,
    its script in `bash --noprofile --norc -eo pipefail`, beside the action's own checkout."""
    action = yaml.safe_load(ACTION.read_text())
    (step,) = action["runs"]["steps"]
    assert set(action["inputs"]) == {"driftboard-url", "token", "family", "weights", "wait", "fail-on"}
    assert set(action["outputs"]) == {"artifact-url", "flag"}
    filled = {
        "${{ inputs.driftboard-url }}": server[0],
        "${{ inputs.token }}": server[1],
        "${{ inputs.family }}": family,
        "${{ inputs.weights }}": str(weights),
        "${{ inputs.wait }}": wait,
        "${{ inputs.fail-on }}": fail_on,
        "${{ github.event.pull_request.head.sha || github.sha }}": COMMIT,
        "${{ github.head_ref || github.ref_name }}": "main",
        "${{ github.event.pull_request.html_url }}": "",
    }
    env = {name: filled[value] for name, value in step["env"].items()}
    return subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={
            "PATH": os.environ["PATH"],
            **env,
            "GITHUB_OUTPUT": str(tmp_path / "github_output"),
            "GITHUB_ACTION_PATH": str(ACTION.parent),
        },
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def outputs(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "github_output").read_text().splitlines())


def test_it_registers_weights_from_the_github_action_and_fails_the_job_on_red(server, tmp_path):
    family = FamilyFactory()
    weights = write_safetensors(tmp_path / "w.safetensors")
    step = github_step(server, tmp_path, weights=weights, family=family.slug, wait="60", fail_on="red")

    artifact = wait_for(lambda: Artifact.objects.filter(family=family).first(), timeout=30, message="the upload")
    score_in_steps(artifact, "red", Artifact.Status.HALTED)
    _, stderr = step.communicate(timeout=90)

    assert step.returncode == 1, stderr
    assert outputs(tmp_path) == {"artifact-url": f"{server[0]}/artifacts/{artifact.pk}/", "flag": "red"}
    assert (artifact.commit_sha, artifact.branch) == (COMMIT, "main")


def test_it_leaves_the_verdict_to_the_commit_status_when_the_wait_runs_out(server, tmp_path):
    family = FamilyFactory()
    weights = write_safetensors(tmp_path / "w.safetensors")
    step = github_step(server, tmp_path, weights=weights, family=family.slug, wait="1", fail_on="red")

    stdout, stderr = step.communicate(timeout=90)

    assert step.returncode == 0, stderr
    assert outputs(tmp_path)["flag"] == "pending"
    assert "::notice::Driftboard is still scoring" in stdout


def test_it_registers_weights_from_the_gitlab_template_with_the_servers_own_client(server, tmp_path):
    family = FamilyFactory()
    weights = write_safetensors(tmp_path / "w.safetensors")
    job = yaml.safe_load(GITLAB.read_text())[".driftboard"]
    variables = job["variables"] | {"DRIFTBOARD_FAMILY": family.slug, "DRIFTBOARD_WEIGHTS": str(weights)}

    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", "\n".join(job["script"])],
        env={
            "PATH": os.environ["PATH"],
            **variables,
            "DRIFTBOARD_URL": server[0],
            "DRIFTBOARD_TOKEN": server[1],
            "CI_COMMIT_SHA": COMMIT,
            "CI_COMMIT_REF_NAME": "release",
        },
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stderr
    artifact = Artifact.objects.get(family=family)
    assert (artifact.commit_sha, artifact.branch) == (COMMIT, "release")
    assert (tmp_path / "driftboard.env").read_text() == (
        f"DRIFTBOARD_ARTIFACT_URL={server[0]}/artifacts/{artifact.pk}/\nDRIFTBOARD_FLAG=pending\n"
    )
    assert job["artifacts"]["reports"]["dotenv"] == "driftboard.env"
