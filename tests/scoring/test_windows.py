import pytest
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from evals.scoring.windows import rolling_windows

PREFIX = -1


def harness_windows(n_tokens: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(model input, predicted tokens) per window, as lm-evaluation-harness feeds its model."""
    tokens = list(range(n_tokens))
    windows = map(make_disjoint_window, get_rolling_token_windows(tokens, PREFIX, max_length, context_len=1))
    return [((context + predicted)[-(max_length + 1) :][:-1], predicted) for context, predicted in windows]


def our_windows(n_tokens: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    prefixed = [PREFIX, *range(n_tokens)]
    return [
        (prefixed[w.start : w.start + w.length], prefixed[w.start + w.length - w.scored + 1 : w.start + w.length + 1])
        for w in rolling_windows(n_tokens, max_length)
    ]


@pytest.mark.parametrize("max_length", [1, 2, 3, 7, 16])
def test_it_builds_the_same_windows_as_the_harness(max_length):
    for n_tokens in range(0, 5 * max_length + 3):
        assert our_windows(n_tokens, max_length) == harness_windows(n_tokens, max_length)


def test_it_predicts_every_token_exactly_once():
    predicted = [token for _, tokens in our_windows(1000, 64) for token in tokens]
    assert predicted == list(range(1000))
