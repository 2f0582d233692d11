"""The review page's first screen: one line saying why, verdicts red first, the worst gated metric charted,
the reviewer's choice of ranking, and no silent fallback from a metric asked for."""

from evals.models import MetricSnapshot
from tests.factories import VerdictFactory, float_bytes
from tests.generation.answer_board import build_answer_board


def ungated_answer_length(board, artifact):
    """A green verdict nothing judged, on a metric that sorts first by name."""
    return VerdictFactory(
        artifact=artifact,
        dataset=board.dataset,
        baseline=board.production,
        metric="answer_length",
        outcome="green",
        delta=-0.0015,
        ci_low=-0.01,
        ci_high=0.007,
        reasons=["answer length worse by 0.2 % (95 % CI -1.0 – 0.7 %), within every limit"],
    )


def test_it_opens_with_one_line_naming_the_red_metrics_with_change_interval_and_limit(board, reader_client):
    artifact = board.candidate("red")
    ungated_answer_length(board, artifact)

    response = reader_client.get(artifact.get_absolute_url())

    decision = response.context["decision"]
    assert (decision.flag_label, decision.status_label) == ("Red", "halted")
    assert {row.verdict.metric for row in decision.deciding} == {"bits_per_byte", "perplexity"}
    bits = next(row for row in decision.deciding if row.verdict.metric == "bits_per_byte")
    assert (
        bits.decision_text == f"bits per byte {bits.delta_text} (CI {bits.ci_text.replace(' to ', ' … ')}, limit −3 %)"
    )
    content = response.content.decode()
    assert content.index('id="decision"') < content.index('id="verdicts"')
    assert "Red — halted</strong>: " in content


def test_it_lists_verdicts_red_first_and_charts_the_worst_gated_metric(board, reader_client):
    artifact = board.candidate("red")
    ungated_answer_length(board, artifact)

    response = reader_client.get(artifact.get_absolute_url())

    rows = response.context["verdict_rows"]
    assert [row.shown_outcome for row in rows] == ["red", "red", "ungated"]
    assert rows[0].verdict.delta <= rows[1].verdict.delta
    assert response.context["focus"] == rows[0]


def test_it_says_why_a_held_candidate_waits(board, reader_client):
    artifact = board.candidate("amber")
    artifact.events.create(action="hold", to_status="held", reason="Drift flag amber: a reviewer decides.")

    decision = reader_client.get(artifact.get_absolute_url()).context["decision"]

    assert decision.held_because == "Drift flag amber: a reviewer decides."


def test_it_names_the_metric_asked_for_that_cannot_be_charted(board, reader_client):
    artifact = board.candidate("red")
    VerdictFactory(
        artifact=artifact,
        dataset=board.dataset,
        metric="judge_score",
        delta=None,
        ci_low=None,
        ci_high=None,
        outcome="incomparable",
        reasons=["The baseline v3 has no judge_score on support-golden."],
    )

    response = reader_client.get(artifact.get_absolute_url(), {"metric": "judge_score"})

    assert response.context["focus_refused"] == (
        "judge score on support-golden v1 is not charted: The baseline v3 has no judge_score on support-golden."
    )
    assert 'id="focus-refused"' in response.content.decode()


def test_it_ranks_the_answers_by_the_order_the_reviewer_picks(db, user, client):
    board = build_answer_board()
    # Sample 2 goes from a near-0 baseline (0.001) to −0.04: −4100 % relative, but only −0.041 in cosine.
    for artifact, value in ((board.baseline, 0.001), (board.candidate, -0.04)):
        snapshot = MetricSnapshot.objects.get(artifact=artifact, dataset=board.dataset, metric="answer_similarity")
        numerators = snapshot.arrays()[1].copy()
        numerators[2] = value
        snapshot.numerators = float_bytes(numerators)
        snapshot.save()
    client.force_login(user)
    url = board.review_url()

    by_change = client.get(url).context
    by_units = client.get(url + "&order=absolute").context
    by_position = client.get(url + "&order=position").context

    # Answer similarity changes in cosine points (its spec's absolute delta): the real drops come first.
    assert [row.sample_id for row in by_change["regressions"]][:2] == ["q5", "q1"]
    assert [pair.compared.sample_id for pair in by_change["answers"]][:2] == ["q5", "q1"]
    assert [row.sample_id for row in by_units["regressions"]][:2] == ["q5", "q1"]
    assert [pair.compared.sample_id for pair in by_units["answers"]][:2] == ["q5", "q1"]
    assert [row.sample_id for row in by_position["regressions"]] == sorted(
        (row.sample_id for row in by_position["regressions"]), key=lambda s: int(s[1:])
    )
    assert [current for _, _, current in by_units["orders"]] == [False, True, False]
