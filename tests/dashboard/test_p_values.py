"""A p-value reads as a figure a statistician would sign: never "0.0000", a bound under 0.0001."""

import math

import pytest
from django.template.loader import render_to_string
from scipy import stats

from driftboard.formatting import p_value


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (3e-9, "p < 0.0001"),
        (0.0, "p < 0.0001"),
        (0.00012, "p = 0.00012"),
        (0.0123, "p = 0.012"),
        (0.05, "p = 0.05"),
        (0.5, "p = 0.5"),
        (1.0, "p = 1"),
        (None, "p —"),
        (math.nan, "p —"),
    ],
)
def test_p_values_read_as_figures_or_bounds(p, text):
    assert p_value(p) == text


def test_the_flips_line_gives_mcnemars_p_as_a_bound_when_it_is_tiny():
    # 40 right→wrong and 2 wrong→right: McNemar's exact (binomial) p is about 4e-10.
    exact = stats.binomtest(2, 42, 0.5).pvalue
    comparison = {"flips": {"right_to_wrong": 40, "wrong_to_right": 2, "p_value": exact}}

    html = render_to_string("dashboard/_flips.html", {"comparison": comparison})

    assert "40 right→wrong, 2 wrong→right · McNemar p &lt; 0.0001<" in html and "0.0000" not in html
