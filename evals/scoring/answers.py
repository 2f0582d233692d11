"""Checks of generated answers against their references, one value per sample (pure functions).

Exact checks compare normalised text, as SQuAD's evaluation normalises answers, extended to
Unicode: `normalize_answer` applies NFKC, case-folds, deletes punctuation (Unicode categories P*
and the ASCII symbols of `string.punctuation`), drops the English articles "a", "an", "the" as
words, and collapses whitespace. So "The Answer: 42." and "answer 42" are an exact match.

- `exact_match`: 1 when the normalised answer equals the normalised reference;
- `contains_reference`: 1 when the normalised reference occurs in the normalised answer as whole
  words ("42" is in "it is 42", not in "420");
- `regex_match`: 1 when a family's regular expression finds a match in the raw answer. Patterns run
  on the `regex` package, which cuts short the backtracking of nested quantifiers (`^(a+)+$`) and
  stops a search past `REGEX_TIMEOUT_SECONDS`: a pattern that takes longer on an answer is a
  `ScoringError` naming the sample (the run fails with it) rather than a value, so a slow pattern
  never passes silently as "no match";
- `answer_similarity`: cosine of the embeddings of answer and reference by an embedding model.
"""

import re
import string
import unicodedata
from collections.abc import Sequence

import numpy as np
import regex

from evals.scoring.batching import ProgressCallback
from evals.scoring.embedding import EMBEDDING_CACHE, EmbeddingStore, score_similarity
from evals.scoring.errors import SampleError, ScoringError
from evals.scoring.loading import LoadedModel

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
# Longest answer a family regex is run on: a pathological pattern then stays bounded in time.
REGEX_MAX_CHARS = 100_000
# Longest a family regex may search one answer.
REGEX_TIMEOUT_SECONDS = 0.5


def normalize_answer(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(
        " " if char.isspace() else char
        for char in text
        if char not in _ASCII_PUNCTUATION and not unicodedata.category(char).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answers: Sequence[str], references: Sequence[str | None]) -> np.ndarray:
    _require_references(references)
    return np.array(
        [normalize_answer(a) == normalize_answer(r) for a, r in zip(answers, references, strict=True)], dtype=np.float64
    )


def contains_reference(answers: Sequence[str], references: Sequence[str | None]) -> np.ndarray:
    """Whole-word containment of the normalised reference; a reference that normalises to nothing
    (only punctuation) must then appear verbatim."""
    _require_references(references)
    found = []
    for answer, reference in zip(answers, references, strict=True):
        wanted = normalize_answer(reference)
        found.append(f" {wanted} " in f" {normalize_answer(answer)} " if wanted else reference.strip() in answer)
    return np.array(found, dtype=np.float64)


def compile_regex(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern)
    except regex.error as error:
        raise ScoringError(f"invalid regex {pattern!r}: {error}") from error


def regex_match(answers: Sequence[str], pattern: str | regex.Pattern[str]) -> np.ndarray:
    compiled = compile_regex(pattern) if isinstance(pattern, str) else pattern
    found = []
    for position, answer in enumerate(answers):
        try:
            found.append(compiled.search(answer[:REGEX_MAX_CHARS], timeout=REGEX_TIMEOUT_SECONDS) is not None)
        except TimeoutError:
            raise ScoringError(
                f"the family regex took longer than {REGEX_TIMEOUT_SECONDS:g} s on the answer at position {position}: "
                "simplify the pattern (nested quantifiers backtrack)"
            ) from None
    return np.array(found, dtype=np.float64)


def answer_similarity(
    embedder: LoadedModel,
    answers: Sequence[str],
    references: Sequence[str | None],
    *,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
    cache: EmbeddingStore | None = EMBEDDING_CACHE,
) -> np.ndarray:
    """Per-sample cosine (float64) of the answer's and the reference's unit-length mean-pooled
    embeddings; an empty answer is embedded as the empty string (its special tokens only). Embeddings
    `cache` holds are reused (see `embedding.score_similarity`)."""
    _require_references(references)
    scores = score_similarity(embedder, answers, references, token_budget=token_budget, progress=progress, cache=cache)
    return scores.similarity


def _require_references(references: Sequence[str | None]) -> None:
    missing = [index for index, reference in enumerate(references) if not reference]
    if missing:
        raise SampleError(
            f"{len(missing)} samples have no reference to check the answer against (first at position {missing[0]})"
        )
