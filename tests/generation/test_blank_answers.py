"""An answer of whitespace only is shown by marks (⏎ newline, · space), not as an empty-looking box."""

from evals.models import Generation
from tests.generation import answer_board
from tests.generation.answer_board import build_answer_board


def test_it_shows_a_whitespace_only_answer_by_its_marks(db, user, client):
    board = build_answer_board()
    Generation.objects.filter(weights_sha256=board.candidate.sha256, text=answer_board.FRANCE_CANDIDATE).update(
        text="\n\n  "
    )
    client.force_login(user)

    page = client.get(board.review_url()).content.decode()

    worst = page[page.index('data-sample-id="q5"') :]
    candidate = worst[worst.index('data-side="candidate"') :]
    assert '<span class="answer-text blank-text" data-blank>⏎⏎··</span>' in candidate
    assert "only whitespace (4 characters)" in candidate
