import numpy as np
import pytest

from evals.comments import comment_render
from evals.models import GoldenSample, MetricSnapshot
from registry.models import Artifact
from registry.publishing import comment_marker
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    FamilyFactory,
    ThresholdFactory,
    VerdictFactory,
    float_bytes,
)

SAMPLES = 20
WORST, SECOND_WORST = 13, 4
HOSTILE_TEXT = "<script>alert(1)</script> | **bold** @octocat fixes #12 [click](https://evil.example) `x`"


def snapshot(artifact: Artifact, dataset, numerators: np.ndarray) -> MetricSnapshot:
    """Bits per byte over 100-byte samples: per-sample value = numerator / 100."""
    values = numerators / 100
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        metric="bits_per_byte",
        scorer_version="causal-rolling/1",
        commit_sha=artifact.commit_sha,
        value=float(values.mean()),
        n=len(values),
        std=float(values.std()),
        ci_low=float(values.min()),
        ci_high=float(values.max()),
        fingerprint={},
        positions=np.arange(len(values), dtype=np.int32).tobytes(),
        numerators=float_bytes(numerators),
        denominators=float_bytes(np.full(len(values), 100.0)),
    )


@pytest.fixture
def compared(db):
    """A candidate 1 % worse than its baseline everywhere, and much worse on two known samples."""
    family, dataset = FamilyFactory(slug="support-lm"), DatasetFactory(samples=SAMPLES)
    GoldenSample.objects.filter(dataset=dataset, position=WORST).update(text=HOSTILE_TEXT)
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION)
    candidate = ArtifactFactory(family=family, drift_flag="red", status=Artifact.Status.HALTED)
    base_numerators = 100 * (2.0 + np.random.default_rng(7).normal(0, 0.05, SAMPLES))
    cand_numerators = base_numerators * 1.01
    cand_numerators[WORST] *= 3
    cand_numerators[SECOND_WORST] *= 1.5
    snapshot(baseline, dataset, base_numerators)
    snapshot(candidate, dataset, cand_numerators)
    threshold = ThresholdFactory(family=family, limit=0.02)
    verdict = VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        delta=-0.0612,
        ci_low=-0.0805,
        ci_high=-0.0419,
        threshold=threshold,
        threshold_history_id=threshold.history.latest().history_id,
        reasons=["bits per byte 6.1 % worse than v1, beyond the 2 % limit"],
    )
    return candidate, verdict, cand_numerators / 100, base_numerators / 100


def render(artifact: Artifact) -> str:
    return comment_render(
        artifact=artifact,
        marker=comment_marker(artifact.family),
        page_url=f"https://driftboard.acme.example/artifacts/{artifact.pk}/",
    )


def section(body: str, title: str) -> list[str]:
    """The data rows of the first table at or after the line containing `title`."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table[2:]  # past the header and the alignment row


def test_it_starts_with_the_hidden_marker_and_links_the_artifact_page(compared):
    candidate, *_ = compared

    body = render(candidate)

    assert body.splitlines()[0] == "<!-- driftboard:support-lm -->"
    assert f"(https://driftboard.acme.example/artifacts/{candidate.pk}/)" in body
    assert f"v{candidate.version} is **red**" in body


def test_it_tabulates_candidate_baseline_delta_and_interval(compared):
    candidate, verdict, *_ = compared

    [row] = section(render(candidate), "| Dataset | Metric |")

    assert f"{verdict.candidate_value:.4f}" in row and f"{verdict.baseline_value:.4f}" in row
    assert "-6.12 %" in row
    assert "-8.05 % … -4.19 %" in row
    assert "2 % worse → red" in row


def test_it_reports_quantiles_of_the_per_sample_values(compared):
    candidate, _, cand_values, base_values = compared

    rows = section(render(candidate), "Per-sample distributions")

    cand_row = next(r for r in rows if "candidate" in r)
    base_row = next(r for r in rows if "baseline" in r)
    for row, values in ((cand_row, cand_values), (base_row, base_values)):
        for quantile in (0.05, 0.5, 0.95):
            assert f"{np.quantile(values, quantile):.4f}" in row
        assert f"| {SAMPLES} |" in row


def test_it_lists_the_most_regressed_samples_first(compared):
    candidate, *_ = compared

    rows = section(render(candidate), "Samples that regressed most")

    assert rows[0].startswith(f"| s{WORST} |")
    assert rows[1].startswith(f"| s{SECOND_WORST} |")
    assert "+" not in "".join(row.split("|")[5] for row in rows)  # only samples that got worse


def test_it_makes_sample_text_inert(compared):
    candidate, *_ = compared

    body = render(candidate)
    row = section(body, "Samples that regressed most")[0]

    assert "<script>" not in body and "**bold**" not in body and "https://evil" not in body
    assert "@octocat" not in body and "fixes #12" not in body
    assert row.count("|") == 7  # six cells: the text's own pipe cannot open a seventh
    assert "&lt;script&gt;" in row


def test_it_says_how_much_of_the_golden_set_decided(compared):
    candidate, verdict, *_ = compared
    type(verdict).objects.filter(pk=verdict.pk).update(stopped_early=True, samples_used=120, samples_total=500)

    body = render(candidate)

    assert "Decided on 24 % of the golden set (n = 120 of 500)" in body


def test_it_shows_the_threshold_as_it_was_applied(compared):
    candidate, verdict, *_ = compared
    verdict.threshold.limit = 0.05
    verdict.threshold.save()

    [row] = section(render(candidate), "| Dataset | Metric |")

    assert "2 % worse" in row and "5 % worse" not in row


def test_it_says_when_there_was_no_baseline(db):
    artifact = ArtifactFactory(drift_flag="green", status=Artifact.Status.PROMOTED)

    body = render(artifact)

    assert "no production baseline" in body
    assert "| Dataset |" not in body
