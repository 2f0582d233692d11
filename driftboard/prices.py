"""What the work of a run costs: prices are configuration (DRIFTBOARD_PRICES), amounts are computed when
read, so a corrected price list reprices the past too.

DRIFTBOARD_PRICES is JSON:
`{"currency": "USD", "gpu_hour": {"cpu": 0.05, "NVIDIA H100*": 3.5, "*": 2.0},
"judge_1k_tokens": {"gpt-4o-mini": {"prompt": 0.00015, "completion": 0.0006}}}`.
Device kinds (`cpu`, or the GPU's model name as CUDA reports it) and judge models are matched by
`fnmatch` patterns, the first listed pattern that matches wins; nothing matching costs nothing.
Pure standard library: settings parse it at start-up.
"""

import fnmatch
import json
from dataclasses import dataclass, field


class PricesError(ValueError):
    """DRIFTBOARD_PRICES is not the JSON described above."""


@dataclass(frozen=True)
class Prices:
    currency: str = "USD"
    gpu_hour: dict[str, float] = field(default_factory=dict)
    # Judge model pattern → {"prompt": price per 1k prompt tokens, "completion": per 1k completion tokens}.
    judge_1k_tokens: dict[str, dict[str, float]] = field(default_factory=dict)

    def device_hour(self, device_kind: str) -> float:
        return next((price for pattern, price in self.gpu_hour.items() if _matches(pattern, device_kind)), 0.0)

    def judge_tokens(self, model: str) -> dict[str, float]:
        return next((price for pattern, price in self.judge_1k_tokens.items() if _matches(pattern, model)), {})

    def judge_amount(self, model: str, *, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.judge_tokens(model)
        return (price.get("prompt", 0.0) * prompt_tokens + price.get("completion", 0.0) * completion_tokens) / 1000


def _matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def prices_parse(raw: str) -> Prices:
    """The prices in DRIFTBOARD_PRICES (empty: everything free, only usage is shown)."""
    if not raw.strip():
        return Prices()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PricesError(f"DRIFTBOARD_PRICES is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"currency", "gpu_hour", "judge_1k_tokens"}:
        raise PricesError("DRIFTBOARD_PRICES takes an object with `currency`, `gpu_hour` and `judge_1k_tokens`.")
    gpu_hour = data.get("gpu_hour", {})
    judges = data.get("judge_1k_tokens", {})
    if not isinstance(gpu_hour, dict) or not all(_price(value) for value in gpu_hour.values()):
        raise PricesError("DRIFTBOARD_PRICES `gpu_hour` maps device kinds to prices (numbers ≥ 0).")
    if not isinstance(judges, dict) or not all(
        isinstance(value, dict) and set(value) <= {"prompt", "completion"} and all(map(_price, value.values()))
        for value in judges.values()
    ):
        raise PricesError(
            'DRIFTBOARD_PRICES `judge_1k_tokens` maps judge models to {"prompt": price, "completion": price}.'
        )
    currency = data.get("currency", "USD")
    if not isinstance(currency, str) or not currency.strip():
        raise PricesError("DRIFTBOARD_PRICES `currency` is a currency code such as USD.")
    return Prices(currency=currency.strip(), gpu_hour=gpu_hour, judge_1k_tokens=judges)


def _price(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
