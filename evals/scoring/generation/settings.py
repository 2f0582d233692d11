"""How answers are generated (`GenerationSettings`), why an answer ends, and its stop strings."""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from evals.scoring.errors import ScoringError

EOS, STOP, LENGTH = "eos", "stop", "length"

# Upper bounds of a family's generation settings: what one answer may cost, and the stop strings
# checked after every generated token.
MAX_NEW_TOKENS_LIMIT = 8192
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 200
GENERATION_SETTING_KEYS = ("max_new_tokens", "stop", "chat_template", "do_sample", "seed", "temperature", "top_p")
_SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "max_new_tokens": int,
    "chat_template": bool,
    "do_sample": bool,
    "seed": int,
    "temperature": (int, float),
    "top_p": (int, float),
}
_SETTING_WORDS = {
    "max_new_tokens": "a whole number",
    "chat_template": "true or false",
    "do_sample": "true or false",
    "seed": "a whole number",
    "temperature": "a number",
    "top_p": "a number",
}


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated; part of every generation's cache key and of the fingerprint."""

    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    chat_template: bool = False
    do_sample: bool = False
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ScoringError(
                f"max_new_tokens must be at least 1 and at most {MAX_NEW_TOKENS_LIMIT}, not {self.max_new_tokens}"
            )
        if any(not isinstance(stop, str) or not stop for stop in self.stop):
            raise ScoringError("stop strings must be non-empty strings")
        if len(self.stop) > MAX_STOP_STRINGS or any(len(stop) > MAX_STOP_CHARS for stop in self.stop):
            raise ScoringError(f"stop: at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_CHARS} characters each")
        if self.temperature <= 0:
            raise ScoringError(f"temperature must be positive, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ScoringError(f"top_p must be in (0, 1], not {self.top_p}")

    @classmethod
    def from_dict(cls, settings: Mapping[str, object]) -> "GenerationSettings":
        """Settings from JSON (a family's), refusing unknown keys and values of the wrong type."""
        unknown = sorted(set(settings) - set(GENERATION_SETTING_KEYS))
        if unknown:
            raise ScoringError(f"unknown generation setting(s) {unknown}; known: {', '.join(GENERATION_SETTING_KEYS)}")
        values = dict(settings)
        for name, kinds in _SETTING_TYPES.items():
            value = values.get(name)
            # JSON true is a Python int too: a flag must be a bool and a number must not be one.
            if name in values and (isinstance(value, bool) != (kinds is bool) or not isinstance(value, kinds)):
                raise ScoringError(f"generation setting `{name}` must be {_SETTING_WORDS[name]}, not {values[name]!r}")
        if "stop" in values:
            if not isinstance(values["stop"], list | tuple):
                raise ScoringError("generation setting `stop` must be a list of strings")
            values["stop"] = tuple(values["stop"])
        return cls(**values)

    def as_dict(self) -> dict:
        """The settings that change an answer: sampling parameters only when sampling."""
        settings = asdict(self)
        settings["stop"] = list(self.stop)
        if not self.do_sample:
            for name in ("seed", "temperature", "top_p"):
                del settings[name]
        return settings

    def sha256(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# The settings a call without any uses.
DEFAULT_SETTINGS = GenerationSettings()


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the earliest stop string, as lm-evaluation-harness post-processes answers."""
    for stop in stops:
        text = text.split(stop)[0]
    return text
