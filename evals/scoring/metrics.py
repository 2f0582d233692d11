"""What a metric is (see DESIGN.md, "Metrics"): a ratio of per-sample sums and a direction.

Every metric is value = transform(Σ numerator_i / Σ denominator_i) over samples. A scorer yields
named per-sample values (for example `nll`, `tokens`, `bytes`); its `MetricSpec`s say which value
is the numerator (times a scale) and which the denominator (1 per sample when absent):

- bits per byte: num = NLL nats / ln 2, den = UTF-8 bytes, lower is better;
- perplexity: num = NLL nats, den = tokens, transform exp, lower is better;
- similarity: num = cosine, den = 1, higher is better;
- judge preference: num = the judge's preference of the candidate's answer over the baseline's
  (+1 / 0 / −1), den = judged (0 for a judge error), higher is better, one-sample.

The table of all metrics is built from the registered scorers: `evals.scoring.scorers.METRICS`.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["lower", "higher"]
Transform = Literal["identity", "exp"]
Delta = Literal["relative", "absolute"]

LN2 = math.log(2)


@dataclass(frozen=True)
class MetricSpec:
    """How a metric aggregates, which way is better and which scorer values it is made of.

    unit_range bounds num/den of a single sample (NLL is never negative, a cosine lies in
    [-1, 1]); the sequential monitor derives its honest per-sample bounds from it.
    tokenizer_free: the metric stays comparable when the tokenizer changes (bits per byte).
    one_sample: each per-sample value already compares the candidate with its baseline (a judge's
    preference, +1 / 0 / −1): the verdict takes the candidate's own values, around 0, instead of
    pairing them with a baseline snapshot of the metric.
    delta: how a change is measured, signed so that negative means worse. `relative` divides by the
    baseline (bits per byte 3 % worse); `absolute` is in the metric's own units (0.4 more flagged
    words per answer) and stays defined when the baseline is 0 — the choice for counts and rates
    that are often 0. Relative limits of thresholds are read in the same sense.
    display_name: the label shown everywhere (default: the name with spaces).
    binary: each sample's value is 0 or 1 (wrong or right) with a denominator of 1: candidate and
    baseline answer the same questions, so the verdict adds McNemar's exact test on the questions
    that flipped.
    """

    name: str
    direction: Direction
    transform: Transform = "identity"
    unit_range: tuple[float, float] = (0.0, math.inf)
    numerator: str = ""
    denominator: str | None = None
    numerator_scale: float = 1.0
    tokenizer_free: bool = False
    one_sample: bool = False
    description: str = ""
    delta: Delta = "relative"
    display_name: str = ""
    binary: bool = False

    def __post_init__(self) -> None:
        if self.delta not in ("relative", "absolute"):
            raise ValueError(f"metric {self.name!r}: delta must be 'relative' or 'absolute', not {self.delta!r}")
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"metric {self.name!r}: direction must be 'lower' or 'higher', not {self.direction!r}")

    @property
    def label(self) -> str:
        return self.display_name or self.name.replace("_", " ")

    @property
    def absolute(self) -> bool:
        return self.delta == "absolute"

    def format_change(self, change: float, *, signed: bool = False) -> str:
        """A change as shown: '3.1 %' (relative) or '0.35' (absolute, in the metric's units)."""
        sign = "+" if signed else ""
        return f"{change:{sign}.3g}" if self.absolute else f"{100 * change:{sign}.1f} %"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def value(self, num_total: np.ndarray | float, den_total: np.ndarray | float) -> np.ndarray:
        ratio = np.divide(num_total, den_total)
        return np.exp(ratio) if self.transform == "exp" else ratio

    def change(self, candidate: np.ndarray | float, baseline: np.ndarray | float) -> np.ndarray:
        """The signed change of `candidate` from `baseline` (negative is worse), as `delta` says."""
        sign = 1.0 if self.direction == "higher" else -1.0
        difference = sign * np.subtract(candidate, baseline)
        # |baseline| keeps "negative means worse" even for a negative mean cosine.
        return difference if self.absolute else difference / np.abs(baseline)

    def is_worse(self, value: float, limit: float) -> bool:
        return value > limit if self.direction == "lower" else value < limit

    def arrays(self, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample numerators and denominators (float64) from a scorer's named values."""
        numerators = np.asarray(values[self.numerator], dtype=np.float64) * self.numerator_scale
        if self.denominator is None:
            return numerators, np.ones_like(numerators)
        return numerators, np.asarray(values[self.denominator], dtype=np.float64)


def bits_per_byte(nll: np.ndarray, n_bytes: np.ndarray) -> float:
    """Σ NLL (nats) / (ln 2 · Σ UTF-8 bytes) over all samples."""
    return float(np.sum(nll) / (LN2 * np.sum(n_bytes)))


def perplexity(nll: np.ndarray, tokens: np.ndarray) -> float:
    """exp(Σ NLL / Σ tokens) over all samples (tokenizer-dependent)."""
    return float(np.exp(np.sum(nll) / np.sum(tokens)))
