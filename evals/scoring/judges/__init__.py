"""LLM-as-judge: judge backends (an OpenAI-compatible endpoint, a local causal LM), the judge modes
over generated answers (pointwise rating, pairwise preference in both orders, repeats), their
cache, and the statistics of a pairwise preference. Pure: no Django."""

from evals.scoring.judges.judging import (
    InMemoryJudgementStore,
    JudgedItem,
    JudgedSamples,
    Judgement,
    JudgementKey,
    JudgementStore,
    JudgeSettings,
    items_from_samples,
    judge_heartbeat,
    judge_items,
)
from evals.scoring.judges.local import LocalJudge
from evals.scoring.judges.preference import Preference, preference_interval, preference_outcome
from evals.scoring.judges.protocol import (
    CallFailure,
    Completion,
    Judge,
    JudgeRequest,
    JudgeStats,
    JudgeUnavailable,
)
from evals.scoring.judges.remote import EndpointSettings, OpenAIJudge
from evals.scoring.judges.templates import TEMPLATE_VERSION

__all__ = [
    "TEMPLATE_VERSION",
    "CallFailure",
    "Completion",
    "EndpointSettings",
    "InMemoryJudgementStore",
    "Judge",
    "JudgeRequest",
    "JudgeSettings",
    "JudgeStats",
    "JudgeUnavailable",
    "JudgedItem",
    "JudgedSamples",
    "Judgement",
    "JudgementKey",
    "JudgementStore",
    "LocalJudge",
    "OpenAIJudge",
    "Preference",
    "items_from_samples",
    "judge_heartbeat",
    "judge_items",
    "preference_interval",
    "preference_outcome",
]
