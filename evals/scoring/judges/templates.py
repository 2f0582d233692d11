"""Judge prompts and the strict parsing of their replies (MT-Bench single-answer and pairwise grading).

The prompts follow MT-Bench's `single-v1` / `single-v1-ref` and `pair-v2` judge prompts; a reply
is parsed strictly: a pointwise reply must say `Rating: [[N]]` with an integer N in 1–10, a
pairwise reply must contain exactly one of `[[A]]`, `[[B]]`, `[[C]]` (the same one, if repeated).
Anything else is unparseable. Bump TEMPLATE_VERSION whenever a prompt changes: it is part of
every judgement's cache key and of the fingerprint.
"""

import re

from evals.scoring.judges.protocol import JudgeRequest, Messages

TEMPLATE_VERSION = 1
DEFAULT_RUBRIC = (
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of the response."
)
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
