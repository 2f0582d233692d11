"""The local judge on the demo model (its opinions are meaningless; the mechanics are tested): each
verdict's probability is that of `verdict]]` after the verdict prefix, batched rows equal one row
alone, pointwise scores are probability-weighted ratings, and judgements are cached by the weights."""

import math

import pytest
import torch

from evals.scoring.judges import InMemoryJudgementStore, JudgedItem, JudgeSettings, LocalJudge, judge_items
from evals.scoring.judges.local import _render
from evals.scoring.judges.templates import RATINGS, pointwise_request

ITEMS = [
    JudgedItem(question="def add(a, b):", answer="return a + b", baseline_answer="pass"),
    JudgedItem(question="The river", answer="flows to the sea.", baseline_answer="the the the", reference="runs"),
    JudgedItem(question="Name a colour.", answer="Blue.", baseline_answer="Blue."),
]


def test_it_reads_verdict_probabilities_from_the_next_token_distribution(demo_lm):
    request = pointwise_request(question="def add(a, b):", answer="return a + b", rubric=None, reference=None)
    [completion] = LocalJudge(demo_lm).complete_many([request])
    assert set(completion.probabilities) == set(RATINGS)
    assert math.isclose(sum(completion.probabilities.values()), 1.0, rel_tol=1e-9)
    best = max(completion.probabilities, key=completion.probabilities.get)
    assert completion.text == f"Rating: [[{best}]]"
    assert _alone_logprob(demo_lm, request, "7") - _alone_logprob(demo_lm, request, "3") == pytest.approx(
        math.log(completion.probabilities["7"]) - math.log(completion.probabilities["3"]), abs=1e-4
    )


def _alone_logprob(lm, request, verdict: str) -> float:
    """log p(`verdict]]` | prompt) from one unpadded forward pass."""
    tokenizer = lm.tokenizer
    prompt = tokenizer(_render(tokenizer, request.messages) + request.verdict_prefix, add_special_tokens=False)[
        "input_ids"
    ]
    continuation = tokenizer(verdict + "]]", add_special_tokens=False)["input_ids"]
    ids = (prompt + continuation)[-lm.max_length :]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
    log_softmax = torch.log_softmax(logits, dim=-1)
    start = len(ids) - len(continuation)
    return float(sum(log_softmax[position - 1, ids[position]] for position in range(start, len(ids))))


def test_pointwise_scores_are_probability_weighted_ratings_and_cached(demo_lm):
    judge, store = LocalJudge(demo_lm), InMemoryJudgementStore()
    result = judge_items(judge, ITEMS, store, JudgeSettings(mode="pointwise"))
    assert result.errors == [None, None, None]
    assert all(1.0 <= value <= 10.0 for value in result.values)
    assert len({round(value, 6) for value in result.values}) == 3
    assert judge.identity == f"local:{demo_lm.weights_sha256}" and judge.stats.calls == 3
    again = judge_items(judge, ITEMS, store, JudgeSettings(mode="pointwise"))
    assert again.calls == 0 and judge.stats.calls == 3
    assert again.values.tolist() == result.values.tolist()


def test_pairwise_on_the_local_judge_gives_combined_preferences(demo_lm):
    result = judge_items(LocalJudge(demo_lm), ITEMS, InMemoryJudgementStore(), JudgeSettings(mode="pairwise"))
    assert result.calls == 6
    assert set(result.values.tolist()) <= {-1.0, 0.0, 1.0}
    assert all(
        len(replies) == 2 and all(r in {"[[A]]", "[[B]]", "[[C]]"} for r in replies) for replies in result.replies
    )
