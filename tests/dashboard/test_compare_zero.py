"""A metric both versions score 0 on reads "no change" on the compare page, not the purple "Incomparable" of
versions scored differently; a 0 baseline alone says that a relative change has no number."""

import numpy as np
import pytest
from django.urls import reverse

from evals.models import DriftVerdict
from evals.services.verdicts import verdict_for
from tests.factories import SnapshotFactory, float_bytes

N = 20


def regex_match(artifact, dataset, matched: int) -> None:
    numerators = np.zeros(N)
    numerators[:matched] = 1.0
    SnapshotFactory(
        artifact=artifact,
        dataset=dataset,
        metric="regex_match",
        scorer_version="answer-checks@1",
        n=N,
        value=matched / N,
        numerators=float_bytes(numerators),
        denominators=float_bytes(np.ones(N)),
    )


def note_of(board, reader_client, a, b) -> str:
    url = f"{reverse('family-compare', args=[board.family.slug])}?a={a.pk}&b={b.pk}"
    content = reader_client.get(url).content.decode()
    table = content[content.index('id="comparison"') :]
    row = table[: table.index("</table>")]
    row = row[row.index("regex match") :]
    return row[: row.index("</tr>")]


@pytest.mark.parametrize(
    ("matched", "badge", "says"),
    [
        (0, '<span class="badge flag-green">No change</span>', "no change (0 = 0)"),
        (3, '<span class="badge flag-none">No relative change</span>', "a relative change is undefined"),
    ],
)
def test_a_zero_baseline_is_not_read_as_scored_differently(board, reader_client, matched, badge, says):
    a, b = board.candidate("green"), board.candidate("red")
    regex_match(a, board.dataset, 0)
    regex_match(b, board.dataset, matched)

    row = note_of(board, reader_client, a, b)

    assert badge in row and says in row
    assert "Incomparable" not in row


def test_versions_scored_differently_stay_incomparable(board, reader_client):
    a, b = board.candidate("green"), board.candidate("red")
    regex_match(a, board.dataset, 0)
    regex_match(b, board.dataset, 0)
    b.snapshots.filter(metric="regex_match").update(
        fingerprint={"dataset_sha256": "other", "tokenizer_hash": "t", "scorer_version": "x", "max_length": 256}
    )

    row = note_of(board, reader_client, a, b)

    assert '<span class="badge flag-incomparable">Incomparable</span>' in row and "scored differently" in row


def review_row(reader_client, artifact) -> str:
    content = reader_client.get(reverse("artifact-detail", args=[artifact.pk])).content.decode()
    table = content[content.index("<table") :]
    row = table[table.index("regex match") :]
    return row[: row.index("</tr>")]


def verdict_stored(candidate, baseline, dataset):
    """The verdict the verdict service gives, stored as the pipeline stores it."""
    fields = verdict_for(candidate.snapshots.get(metric="regex_match"), baseline)
    return DriftVerdict.objects.create(artifact=candidate, dataset=dataset, metric="regex_match", **fields)


@pytest.mark.parametrize(
    ("matched", "badge", "says"),
    [
        (0, '<span class="badge flag-green">No change</span>', "no change (0 = 0)"),
        (3, '<span class="badge flag-none">No relative change</span>', "a relative change is undefined"),
    ],
)
def test_the_review_page_reads_a_zero_baseline_as_the_compare_page_does(board, reader_client, matched, badge, says):
    candidate = board.candidate("red")
    regex_match(board.production, board.dataset, 0)
    regex_match(candidate, board.dataset, matched)
    verdict = verdict_stored(candidate, board.production, board.dataset)
    assert verdict.outcome == DriftVerdict.Outcome.INCOMPARABLE  # stored as before: no number to give

    row = review_row(reader_client, candidate)

    assert badge in row and says in row
    assert "Incomparable" not in row


def test_on_the_review_page_versions_scored_differently_stay_incomparable(board, reader_client):
    candidate = board.candidate("red")
    regex_match(board.production, board.dataset, 0)
    regex_match(candidate, board.dataset, 0)
    candidate.snapshots.filter(metric="regex_match").update(
        fingerprint={"dataset_sha256": "other", "tokenizer_hash": "t", "scorer_version": "x", "max_length": 256}
    )
    verdict_stored(candidate, board.production, board.dataset)

    row = review_row(reader_client, candidate)

    assert '<span class="badge flag-incomparable">Incomparable</span>' in row and "Scored differently" in row
