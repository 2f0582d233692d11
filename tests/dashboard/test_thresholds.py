from django.urls import reverse

from evals.models import Threshold


def test_it_lists_records_with_rationale_owner_and_an_overdue_label(board, reader_client):
    content = reader_client.get(reverse("threshold-list")).content.decode()
    assert board.threshold.rationale in content
    assert board.threshold.owner in content
    assert '<span class="badge badge-overdue">Overdue</span>' in content
    assert "Too many false alarms at 2 %" in content


def test_it_shows_the_change_history_as_a_diff_with_who_and_why(board, reader_client, staff_user):
    response = reader_client.get(reverse("threshold-detail", args=[board.threshold.pk]))
    latest = response.context["history"][0]
    assert latest.record.history_user == staff_user
    assert latest.record.history_change_reason == "Too many false alarms at 2 %"
    assert [(c.field, c.old, c.new) for c in latest.changes] == [("limit", 0.02, 0.03)]
    content = response.content.decode()
    assert "<del>0.02</del> → <ins>0.03</ins>" in content
    assert f'id="v{latest.record.history_id}"' in content


def test_it_links_staff_to_the_admin_editor(board, staff_page_client, reader_client):
    edit = reverse("admin:evals_threshold_change", args=[board.threshold.pk])
    assert edit.encode() in staff_page_client.get(reverse("threshold-detail", args=[board.threshold.pk])).content
    assert edit.encode() not in reader_client.get(reverse("threshold-detail", args=[board.threshold.pk])).content


def test_it_backtests_a_draft_without_saving_it(board, reader_client):
    url = reverse("threshold-detail", args=[board.threshold.pk])
    response = reader_client.get(url, {"rule": "relative", "limit": "50", "severity": "block"})  # 50 %
    backtest = response.context["backtest"]
    verdicts = board.threshold.driftverdict_set.filter(metric="bits_per_byte")
    assert backtest["total"] == verdicts.count()
    outcomes = {outcome: would_be for outcome, _, would_be in backtest["outcomes"]}
    assert outcomes == {"green": verdicts.count(), "amber": 0, "red": 0}
    changed = {row["artifact"] for row in backtest["changed"]}
    assert changed == set(verdicts.exclude(outcome="green").values_list("artifact_id", flat=True))
    assert Threshold.objects.get(pk=board.threshold.pk).limit == 0.03


def test_it_rejects_an_invalid_draft(board, reader_client):
    response = reader_client.get(
        reverse("threshold-detail", args=[board.threshold.pk]),
        {"rule": "relative", "limit": "150", "severity": "block"},
    )
    assert response.context["backtest"] is None
    assert "limit" in response.context["form"].errors
