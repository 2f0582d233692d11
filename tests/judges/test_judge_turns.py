"""MT-Bench's multi-turn judge prompts: the judge reads the whole conversation and grades the answer to
its last user turn, alone (1–10) or against another assistant's conversation ([[A]] / [[B]] / [[C]])."""

import re

from evals.scoring.judges.templates import (
    DEFAULT_RUBRIC,
    Turn,
    pairwise_turns_request,
    parse_pair_verdict,
    parse_rating,
    pointwise_turns_request,
)
from tests.judges.conftest import ok

# FastChat's llm_judge/data/judge_prompts.jsonl, as published.
MT_BENCH_SINGLE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to "
    "the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. You evaluation should focus "
    "on the assistant's answer to the second user question. Begin your evaluation by providing a short "
    "explanation. Be as objective as possible. After providing your explanation, you must rate the response on "
    'a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
)
MT_BENCH_SINGLE = (
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n"
    "{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n"
    "<|The End of Assistant A's Conversation with User|>"
)
MT_BENCH_REFERENCE = (
    "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}\n\n"
    "### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n"
)
MT_BENCH_PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user questions. You should choose the assistant that follows the user's instructions and answers "
    "the user's questions better. Your evaluation should consider factors such as the helpfulness, relevance, "
    "accuracy, depth, creativity, and level of detail of their responses. You should focus on who provides a "
    "better answer to the second user question. Begin your evaluation by comparing the responses of the two "
    "assistants and provide a short explanation. Avoid any positional biases and ensure that the order in which "
    "the responses were presented does not influence your decision. Do not allow the length of the responses to "
    "influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After "
    'providing your explanation, output your final verdict by strictly following this format: "[[A]]" if '
    'assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
MT_BENCH_PAIR = (
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n"
    "{answer_a_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_a_2}\n\n"
    "<|The End of Assistant A's Conversation with User|>\n\n\n"
    "<|The Start of Assistant B's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant B:\n"
    "{answer_b_1}\n\n### User:\n{question_2}\n\n### Assistant B:\n{answer_b_2}\n\n"
    "<|The End of Assistant B's Conversation with User|>"
)
TWO_TURNS = [
    Turn("Which city is the capital of France?", answer="Paris.", answer_b="Lyon.", reference="Paris"),
    Turn("And its river?", answer="The Seine.", answer_b="The Rhône.", reference="the Seine"),
]
CONVERSATION = [
    Turn("Which city is the capital of France?", answer="Paris.", answer_b="Paris.", reference="Paris"),
    Turn("And its river?", answer="The Seine.", answer_b="The Seine.", reference="the Seine"),
    Turn("How long is that river?", answer="About 777 km.", answer_b="About 80 km.", reference="777 km"),
]
SYSTEM = "Answer briefly."


def without_references(turns: list[Turn]) -> list[Turn]:
    return [Turn(turn.question, answer=turn.answer, answer_b=turn.answer_b) for turn in turns]


def two_turn_fields() -> dict[str, str]:
    first, second = TWO_TURNS
    return {
        "question_1": first.question,
        "question_2": second.question,
        "answer_1": first.answer,
        "answer_2": second.answer,
        "answer_a_1": first.answer,
        "answer_a_2": second.answer,
        "answer_b_1": first.answer_b,
        "answer_b_2": second.answer_b,
        "ref_answer_1": first.reference,
        "ref_answer_2": second.reference,
    }


def test_it_asks_mt_benchs_single_answer_multi_turn_prompt():
    request = pointwise_turns_request(turns=without_references(TWO_TURNS), rubric=None)
    assert request.messages == [
        {"role": "system", "content": MT_BENCH_SINGLE_SYSTEM},
        {"role": "user", "content": MT_BENCH_SINGLE.format(**two_turn_fields())},
    ]
    assert (request.verdict_prefix, request.verdicts[0], request.verdicts[-1]) == ("Rating: [[", "1", "10")


def test_it_asks_mt_benchs_pairwise_multi_turn_prompt():
    request = pairwise_turns_request(turns=without_references(TWO_TURNS), rubric=None)
    assert request.messages == [
        {"role": "system", "content": MT_BENCH_PAIR_SYSTEM},
        {"role": "user", "content": MT_BENCH_PAIR.format(**two_turn_fields())},
    ]
    assert (request.verdict_prefix, request.verdicts) == ("[[", ("A", "B", "C"))


def test_it_shows_the_reference_conversation_before_the_answers():
    fields = two_turn_fields()
    single = pointwise_turns_request(turns=TWO_TURNS, rubric="Check the facts.")
    pair = pairwise_turns_request(turns=TWO_TURNS, rubric=None)
    assert single.messages[1]["content"] == MT_BENCH_REFERENCE.format(**fields) + MT_BENCH_SINGLE.format(**fields)
    assert "Check the facts. You evaluation should focus" in single.messages[0]["content"]
    assert pair.messages[1]["content"] == MT_BENCH_REFERENCE.format(**fields) + MT_BENCH_PAIR.format(**fields)


def conversation_of(prompt: str, assistant: str) -> list[tuple[str, str]]:
    """The (question, answer) exchanges of one assistant's conversation in a judge prompt."""
    start = prompt.index(f"<|The Start of Assistant {assistant}'s Conversation with User|>")
    end = prompt.index(f"<|The End of Assistant {assistant}'s Conversation with User|>")
    exchanges = re.findall(rf"### User:\n(.*?)\n\n### Assistant {assistant}:\n(.*?)\n\n", prompt[start:end], re.S)
    return [(question, answer) for question, answer in exchanges]


def fact_checking_judge(body: dict, _call: int):
    """A judge that reads the conversation it is sent and grades only the answer to its last turn:
    right when it holds the last reference answer."""
    system, prompt = (message["content"] for message in body["messages"])
    reference = re.findall(r"### Reference answer:\n(.*?)\n\n", prompt)[-1]
    if "[[A]]" in system:
        right = [reference in conversation_of(prompt, side)[-1][1] for side in ("A", "B")]
        return ok("A is right on the last turn." + (" [[A]]" if right == [True, False] else " [[B]]"))
    last_answer = conversation_of(prompt, "A")[-1][1]
    return ok("Rating: [[9]]" if reference in last_answer else "Rating: [[2]]")


def test_a_judge_sees_the_whole_conversation_and_grades_its_last_turn(judge_server):
    judge_server.replier = fact_checking_judge
    right = pointwise_turns_request(turns=CONVERSATION, rubric=None, system=SYSTEM)
    wrong = pointwise_turns_request(
        turns=[Turn(t.question, answer=t.answer_b, reference=t.reference) for t in CONVERSATION],
        rubric=None,
        system=SYSTEM,
    )
    in_order = pairwise_turns_request(turns=CONVERSATION, rubric=DEFAULT_RUBRIC, system=SYSTEM)
    swapped = [Turn(t.question, answer=t.answer_b, answer_b=t.answer, reference=t.reference) for t in CONVERSATION]
    in_reverse = pairwise_turns_request(turns=swapped, rubric=DEFAULT_RUBRIC, system=SYSTEM)

    replies = judge_server.judge().complete_many([right, wrong, in_order, in_reverse])

    assert [parse_rating(reply.text) for reply in replies[:2]] == [9, 2]
    assert [parse_pair_verdict(reply.text) for reply in replies[2:]] == ["A", "B"]
    # The calls run concurrently: find the rated conversation among what the judge received.
    [sent] = [request["messages"] for request in judge_server.requests if request["messages"] == right.messages]
    assert "focus on the assistant's answer to the last user question" in sent[0]["content"]
    assert sent[1]["content"].count(f"### System:\n{SYSTEM}") == 1
    assert conversation_of(sent[1]["content"], "A") == [(t.question, t.answer) for t in CONVERSATION]
