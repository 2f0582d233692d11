"""The local judge on the demo model (its opinions are meaningless; the mechanics are tested): each
verdict's probability is that of `verdict]]` after the verdict prefix, batched rows equal one row
alone, pointwise scores are probability-weighted ratings, and judgements are cached by the weights."""

import dataclasses
import math

import pytest
import torch

from evals.scoring.judges import InMemoryJudgementStore, JudgedItem, JudgeSettings, LocalJudge, judge_items
from evals.scoring.judges.local import _render
from evals.scoring.judges.templates import RATINGS, pairwise_request, pointwise_request

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
    prompt = _prompt(lm, request)
    continuation = lm.tokenizer(verdict + "]]", add_special_tokens=False)["input_ids"]
    ids = (prompt + continuation)[-lm.max_length :]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
    log_softmax = torch.log_softmax(logits, dim=-1)
    start = len(ids) - len(continuation)
    return float(sum(log_softmax[position - 1, ids[position]] for position in range(start, len(ids))))


def _prompt(lm, request) -> list[int]:
    text = _render(lm.tokenizer, request.messages) + request.verdict_prefix
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


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


SHORT = [{"role": "user", "content": "The river flows to the sea. Rate it."}]


@pytest.mark.parametrize("messages", ["short", "cut"])
def test_every_verdict_equals_its_own_unpadded_pass_whether_the_prompt_fits_or_is_cut(demo_lm, messages):
    """The prompt runs once and its cache serves every verdict, `10]]` (a token more) included; a prompt
    too long for the context is cut for each verdict as that verdict's own pass would cut it."""
    answer = " ".join(["flows to the sea"] * 100)
    requests = [
        pointwise_request(question="The river", answer=answer, rubric=None, reference="runs"),
        pairwise_request(question="The river", answer_a=answer, answer_b="the the the", rubric=None, reference=None),
    ]
    if messages == "short":
        requests = [dataclasses.replace(request, messages=SHORT) for request in requests]
    fits = [len(_prompt(demo_lm, request)) + 3 <= demo_lm.max_length for request in requests]
    assert fits == ([True, True] if messages == "short" else [False, False])
    completions = LocalJudge(demo_lm).complete_many(requests)
    for request, completion in zip(requests, completions, strict=True):
        alone = [_alone_logprob(demo_lm, request, verdict) for verdict in request.verdicts]
        expected = torch.softmax(torch.tensor(alone, dtype=torch.float64), dim=0).tolist()
        assert [completion.probabilities[v] for v in request.verdicts] == pytest.approx(expected, abs=1e-5)
