"""Drafts: answers believed to be the model's (another weights' stored answers), how a row follows
its draft from step to step, finding its place again after a disagreement, and what drafting did."""

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

# Draft tokens a row feeds per forward pass: it starts with _DRAFT_START, doubles while the whole
# draft is accepted (up to the cap: a longer feed costs more than it is likely to save) and drops
# to what was accepted after a disagreement.
_DRAFT_START, _DRAFT_CAP = 4, 16
# How many of an answer's last tokens are looked up in the draft to find the row's place again.
_REALIGN_NGRAMS = (3, 2)


@dataclass(frozen=True)
class Draft:
    """An answer believed to be the model's (another weights' stored answer), and whose weights gave it.

    Its text is tokenised by the model's own tokenizer, so a draft made with another tokenizer serves
    as well; an answer that ended at EOS drafts the EOS token too.
    """

    text: str
    finish: str
    source: str = ""


@dataclass
class DraftStats:
    """What drafting did: draft tokens fed and accepted, answers also decoded plainly (the audit) and
    how many of those differed, and the forward passes plain decoding of the same batches would have
    taken beyond those run."""

    answers: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    audited_answers: int = 0
    audited_tokens: int = 0
    audit_mismatches: int = 0
    forward_passes_saved: int = 0

    def add(self, other: "DraftStats") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class StoredAnswer(NamedTuple):
    """A stored answer that may draft another weights' answer to the same prompt."""

    weights_sha256: str
    config_sha256: str
    text: str
    finish: str


def chosen_drafts(
    keys: Sequence[Hashable], stored: Mapping[tuple[str, str], Sequence[StoredAnswer]], sources: Sequence[str]
) -> dict[Hashable, "Draft"]:
    """For each answer to generate (a `GenerationKey`), the draft among the answers `stored` by (prompt,
    chat template): that of the first of `sources`, preferably under the key's own settings. Any stored
    answer is a sound draft (the model verifies every token); a closer one only saves more forward passes."""
    rank = {source: index for index, source in enumerate(sources)}
    drafts = {}
    for key in keys:
        found = stored.get((key.prompt_sha256, key.chat_template_sha256))
        if found:
            best = min(
                found, key=lambda answer: (rank[answer.weights_sha256], answer.config_sha256 != key.config_sha256)
            )
            drafts[key] = Draft(best.text, best.finish, best.weights_sha256)
    return drafts


def drafts_from_answers(
    answers: Mapping[Any, Any], source: str
) -> Callable[[Sequence[Hashable]], dict[Hashable, "Draft"]]:
    """A `Drafting.lookup` over answers at hand (`GenerationKey` → `Generation`, as an in-memory store
    keeps them): the `source` weights' answers, chosen as `chosen_drafts` chooses. Reads `answers` at
    each lookup."""

    def lookup(keys: Sequence[Hashable]) -> dict[Hashable, Draft]:
        wanted = {(key.prompt_sha256, key.chat_template_sha256) for key in keys}
        stored: dict[tuple[str, str], list[StoredAnswer]] = {}
        for key, answer in answers.items():
            place = (key.prompt_sha256, key.chat_template_sha256)
            if key.weights_sha256 == source and place in wanted:
                stored.setdefault(place, []).append(StoredAnswer(source, key.config_sha256, answer.text, answer.finish))
        return chosen_drafts(keys, stored, [source])

    return lookup


class RowDraft:
    """One row's draft and where the row stands in it: the index of the next draft token (None once
    the row lost its place) and how many tokens to feed next."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.next: int | None = 0
        self.size = _DRAFT_START
        self.misses = 0

    def propose(self, room: int, width: int | None = None) -> list[int]:
        """The next draft tokens to feed, within `room` (fewer where the draft ends): as many as the
        row's size, or `width` where the step sets how many positions each row is fed."""
        if self.next is None or room <= 0:
            return []
        return self.ids[self.next : self.next + min(self.size if width is None else width, room)]

    def update(self, answer: list[int], fed: int, accepted: int) -> None:
        """After a step that fed `fed` draft tokens, of which the first `accepted` agreed."""
        if self.next is None:
            self.next = _realign(self.ids, answer, len(answer))
            self.size = 2
            return
        own = self.next + accepted  # the draft index of the model's own token this step
        if own < len(self.ids) and self.ids[own] == answer[-1]:
            self.next, self.misses = own + 1, 0
            self.size = min(_DRAFT_CAP, 2 * self.size) if accepted == fed else self.size
            return
        self.size = max(1, accepted)
        self.misses = 0 if accepted else self.misses + 1
        found = _realign(self.ids, answer, own + 1)
        # No match: guess the model replaced one token, once; after that wait for a match.
        self.next = found if found is not None else (own + 1 if self.misses <= 1 else None)


def _realign(ids: list[int], answer: list[int], near: int) -> int | None:
    """The draft index after the answer's last few tokens found in the draft (nearest to `near`)."""
    for n in _REALIGN_NGRAMS:
        if len(answer) < n:
            continue
        tail = answer[-n:]
        ends = [start + n for start in range(len(ids) - n + 1) if ids[start : start + n] == tail]
        if ends:
            return min(ends, key=lambda end: abs(end - near))
    return None


def first_difference(answer: list[int], draft: list[int]) -> int:
    """The index of the first token where an answer departs from its draft."""
    return next(
        (index for index, (a, b) in enumerate(zip(answer, draft, strict=False)) if a != b), min(len(answer), len(draft))
    )
