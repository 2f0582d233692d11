"""In Chromium: while runs are live, the review page's header follows the artifact's flag and stage, so a
promotion does not leave "Not scored · Staging" beside "Promoted" until a reload."""

import pytest

from evals.models import EvalRun
from registry.models import Artifact
from tests.dashboard.board import running_run

pytestmark = pytest.mark.browser


def test_it_updates_the_flag_and_stage_without_a_reload(open_page, reader, live_board):
    artifact = live_board.candidate("green")
    Artifact.objects.filter(pk=artifact.pk).update(drift_flag="", status=Artifact.Status.SCORING)
    run = running_run(live_board, artifact)
    page, errors = open_page(reader)
    page.goto(artifact.get_absolute_url())
    assert page.locator("h1 [data-artifact-flag]").text_content().strip() == "Not scored"

    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.SUCCEEDED, samples_done=run.samples_total)
    Artifact.objects.filter(pk=artifact.pk).update(
        drift_flag="green", status=Artifact.Status.PROMOTED, stage=Artifact.Stage.PRODUCTION
    )

    page.locator("#artifact-stage", has_text="Production").wait_for(timeout=15_000)
    assert page.locator("h1 [data-artifact-flag] .flag-green").count() == 1
    assert page.locator("dd[data-artifact-flag] .flag-green").count() == 1
    assert page.locator("#artifact-status").text_content() == "Promoted"
    assert errors == []
