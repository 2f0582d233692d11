"""A metric both versions score 0 on reads "no change" on the compare page, not the purple "Incomparable" of
versions scored differently; a 0 baseline alone says that a relative change has no number."""

import numpy as np
import pytest
from django.urls import reverse

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
