"""The judge protocol: what a judge backend is asked and what it answers.

A judge receives chat conversations (the rendered template) and, for each, either a completion
(the reply text, or for a local judge the probability of each verdict) or a call failure (the
endpoint stayed unavailable after its retries). Backends never raise for one bad call: a failed
call is one sample's judge error, never a crashed run.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class JudgeRequest:
    """One conversation to judge and the verdicts its reply may end with (`"1"`…`"10"`, `"A"`/`"B"`/`"C"`).

    `verdict_prefix` is the text the verdict follows in the expected reply (`"Rating: [["`); a local
    judge reads the next-token distribution after it.
    """

    messages: Messages
    verdicts: tuple[str, ...]
    verdict_prefix: str


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # A local judge's probability of each verdict (they sum to 1); None for a text reply.
    probabilities: Mapping[str, float] | None = None


@dataclass(frozen=True)
class CallFailure:
    """The call could not be made (timeouts, 5xx and 429 past the retries, a malformed body)."""

    message: str


class JudgeUnavailable(ConnectionError):
    """Judge calls failed past their retries: a transient error, so a worker's run is retried later
    (the judgements already made are cached) instead of storing the samples as judge errors."""


@dataclass
class JudgeStats:
    """What a judge has cost so far (shown on /queues/ and /metrics)."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    slowest: float = 0.0

    @property
    def mean_latency(self) -> float | None:
        return self.seconds / self.calls if self.calls else None


class Judge(Protocol):
    # What the judgements depend on: URL + model of an endpoint, or the local weights' sha256.
    identity: str
    stats: JudgeStats

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[Completion | CallFailure]:
        """One result per request, in order."""
        ...
