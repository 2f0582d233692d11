"""Changes read as pages and PR comments show them: a change that rounds to nothing is never "-0.00 %"."""

from driftboard.formatting import percent


def test_it_never_shows_a_negative_zero():
    assert percent(-0.000001) == "+0.00 %"
    assert percent(-0.000001, signed=False) == "0.00 %"
    assert percent(-0.0) == "+0.00 %"


def test_it_keeps_real_changes_and_their_sign():
    assert (percent(-0.0123), percent(0.0123), percent(0.5, signed=False)) == ("-1.23 %", "+1.23 %", "50.00 %")
    assert percent(None) == percent(float("nan")) == "—"
