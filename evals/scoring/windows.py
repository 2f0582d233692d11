"""Rolling windows over a token sequence, as lm-evaluation-harness scores `loglikelihood_rolling`.

A text of n tokens is scored on the prefixed sequence u = [prefix] + tokens (n + 1 ids), where
the prefix is the BOS token (else EOS). Each window feeds u[start : start + length] to the model
and predicts u[start + 1 : start + length + 1]; only its last `scored` predictions count. The
predicted spans are disjoint and cover all n tokens: the first window predicts up to max_length
tokens from the prefix, each later one predicts the next max_length tokens, and the last one is
back-filled with earlier tokens as context so that every window is as long as the model allows.
This is `get_rolling_token_windows(..., context_len=1)` followed by `make_disjoint_window`.
"""

from typing import NamedTuple


class Window(NamedTuple):
    start: int
    length: int
    scored: int


def rolling_windows(n_tokens: int, max_length: int) -> list[Window]:
    """Windows (in prefixed-sequence coordinates) that predict each of `n_tokens` tokens once."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if n_tokens == 0:
        return []
    first_length = min(max_length, n_tokens)
    windows = [Window(start=0, length=first_length, scored=first_length)]
    predicted = first_length
    while predicted < n_tokens:
        scored = min(n_tokens - predicted, max_length)
        end = predicted + scored
        windows.append(Window(start=end - max_length, length=max_length, scored=scored))
        predicted = end
    return windows
