"""Judge prompts and the strict parsing of their replies (MT-Bench single-answer and pairwise grading).

The prompts follow MT-Bench's `single-v1` / `single-v1-ref` and `pair-v2` judge prompts, and for a
conversation its `single-v1-multi-turn` and `pair-v2-multi-turn`: the judge reads the whole
conversation (with the reference answers of its turns, when it has them) and grades the answer to
the last user turn (MT-Bench's "second", which it is in a two-turn conversation). A reply is parsed
strictly: a pointwise reply must say `Rating: [[N]]` with an integer N in 1–10, a
pairwise reply must contain exactly one of `[[A]]`, `[[B]]`, `[[C]]` (the same one, if repeated).
Anything else is unparseable. Bump TEMPLATE_VERSION whenever a prompt changes: it is part of
every judgement's cache key and of the fingerprint.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from evals.scoring.judges.protocol import JudgeRequest, Messages

TEMPLATE_VERSION = 1
DEFAULT_RUBRIC = (
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of the response."
)
# MT-Bench's pairwise prompts speak of "their responses".
_PAIR_RUBRIC = DEFAULT_RUBRIC.replace("of the response.", "of their responses.")
RATINGS = tuple(str(n) for n in range(1, 11))
PAIR_VERDICTS = ("A", "B", "C")

_SINGLE_SYSTEM = "You are a helpful assistant."
_SINGLE_USER = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided "
    "by an AI assistant to the user question displayed below. {rubric} Begin your evaluation by providing "
    "a short explanation. Be as objective as possible. After providing your explanation, you must rate "
    'the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: '
    '"Rating: [[5]]".\n\n[Question]\n{question}\n\n{reference}'
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
_PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. You should choose the assistant that follows the "
    "user's instructions and answers the user's question better. {rubric} Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure "
    "that the order in which the responses were presented does not influence your decision. Do not allow "
    "the length of the responses to influence your evaluation. Do not favor certain names of the "
    "assistants. Be as objective as possible. After providing your explanation, output your final verdict "
    'by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is '
    'better, and "[[C]]" for a tie.'
)
_PAIR_USER = (
    "[User Question]\n{question}\n\n{reference}"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
_REFERENCE = "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
# "You evaluation" is MT-Bench's own wording, kept so the prompt is the one its judges were measured on.
_SINGLE_TURNS_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. {rubric} You evaluation should focus on the assistant's answer to "
    "the {focus} user question. Begin your evaluation by providing a short explanation. Be as objective as "
    "possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
    'following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
)
_PAIR_TURNS_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user questions. You should choose the assistant that follows the user's instructions and answers "
    "the user's questions better. {rubric} You should focus on who provides a better answer to the {focus} "
    "user question. Begin your evaluation by comparing the responses of the two assistants and provide a short "
    "explanation. Avoid any positional biases and ensure that the order in which the responses were presented "
    "does not influence your decision. Do not allow the length of the responses to influence your evaluation. "
    "Do not favor certain names of the assistants. Be as objective as possible. After providing your "
    'explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is '
    'better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
_NO_REFERENCE = "(no reference answer)"

_RATING = re.compile(r"Rating:\s*\[\[(\d+)\]\]")
_PAIR = re.compile(r"\[\[([ABC])\]\]")


def question_text(prompt: str | Messages) -> str:
    """A plain prompt as is; chat messages as `role: content` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{turn['role']}: {turn['content']}" for turn in prompt)


def pointwise_request(*, question: str, answer: str, rubric: str | None, reference: str | None) -> JudgeRequest:
    user = _SINGLE_USER.format(
        rubric=rubric or DEFAULT_RUBRIC, question=question, answer=answer, reference=_reference_block(reference)
    )
    messages = [{"role": "system", "content": _SINGLE_SYSTEM}, {"role": "user", "content": user}]
    return JudgeRequest(messages=messages, verdicts=RATINGS, verdict_prefix="Rating: [[")


def pairwise_request(
    *, question: str, answer_a: str, answer_b: str, rubric: str | None, reference: str | None
) -> JudgeRequest:
    system = _PAIR_SYSTEM.format(rubric=rubric or DEFAULT_RUBRIC)
    user = _PAIR_USER.format(
        question=question, answer_a=answer_a, answer_b=answer_b, reference=_reference_block(reference)
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return JudgeRequest(messages=messages, verdicts=PAIR_VERDICTS, verdict_prefix="[[")


@dataclass(frozen=True)
class Turn:
    """One user turn of a conversation as the judge reads it: the question, the answer given to it
    (by the one assistant, or assistant A and B), and its reference answer, if any."""

    question: str
    answer: str = ""
    answer_b: str = ""
    reference: str | None = None


def pointwise_turns_request(*, turns: Sequence[Turn], rubric: str | None, system: str | None = None) -> JudgeRequest:
    """MT-Bench `single-v1-multi-turn`: the whole conversation, the answer to its last turn rated 1–10.
    `system`: the conversation's own system message, shown before its first turn."""
    judge_system = _SINGLE_TURNS_SYSTEM.format(rubric=rubric or DEFAULT_RUBRIC, focus=_focus(turns))
    user = _reference_turns(turns) + _conversation(turns, "A", system, [turn.answer for turn in turns])
    messages = [{"role": "system", "content": judge_system}, {"role": "user", "content": user}]
    return JudgeRequest(messages=messages, verdicts=RATINGS, verdict_prefix="Rating: [[")


def pairwise_turns_request(*, turns: Sequence[Turn], rubric: str | None, system: str | None = None) -> JudgeRequest:
    """MT-Bench `pair-v2-multi-turn`: assistant A's and assistant B's whole conversations (`answer`,
    `answer_b` of each turn), the better answer to the last turn chosen, or a tie."""
    judge_system = _PAIR_TURNS_SYSTEM.format(rubric=rubric or _PAIR_RUBRIC, focus=_focus(turns))
    user = (
        _reference_turns(turns)
        + _conversation(turns, "A", system, [turn.answer for turn in turns])
        + "\n\n\n"
        + _conversation(turns, "B", system, [turn.answer_b for turn in turns])
    )
    messages = [{"role": "system", "content": judge_system}, {"role": "user", "content": user}]
    return JudgeRequest(messages=messages, verdicts=PAIR_VERDICTS, verdict_prefix="[[")


def _focus(turns: Sequence[Turn]) -> str:
    if not turns:
        raise ValueError("a conversation to judge has at least one user turn")
    return "second" if len(turns) == 2 else "last"


def _conversation(turns: Sequence[Turn], assistant: str, system: str | None, answers: Sequence[str]) -> str:
    opening = f"### System:\n{system}\n\n" if system else ""
    exchanges = "".join(
        f"### User:\n{turn.question}\n\n### Assistant {assistant}:\n{answer}\n\n"
        for turn, answer in zip(turns, answers, strict=True)
    )
    return (
        f"<|The Start of Assistant {assistant}'s Conversation with User|>\n\n{opening}{exchanges}"
        f"<|The End of Assistant {assistant}'s Conversation with User|>"
    )


def _reference_turns(turns: Sequence[Turn]) -> str:
    """MT-Bench's reference conversation, when any turn has a reference answer."""
    if not any(turn.reference for turn in turns):
        return ""
    exchanges = "".join(
        f"### User:\n{turn.question}\n\n### Reference answer:\n{turn.reference or _NO_REFERENCE}\n\n" for turn in turns
    )
    return f"<|The Start of Reference Answer|>\n\n{exchanges}<|The End of Reference Answer|>\n\n\n"


def _reference_block(reference: str | None) -> str:
    return _REFERENCE.format(reference=reference) if reference else ""


def parse_rating(reply: str) -> int | None:
    """The 1–10 rating of a `Rating: [[N]]` reply; None when absent, out of range or contradictory."""
    ratings = {int(found) for found in _RATING.findall(reply)}
    if len(ratings) != 1:
        return None
    (rating,) = ratings
    return rating if 1 <= rating <= 10 else None


def parse_pair_verdict(reply: str) -> str | None:
    """`A`, `B` or `C` when the reply names exactly one of `[[A]]`, `[[B]]`, `[[C]]`; else None."""
    verdicts = set(_PAIR.findall(reply))
    return verdicts.pop() if len(verdicts) == 1 else None
