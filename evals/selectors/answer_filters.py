"""Which answers the answers explorer lists: a ranking of every sample, narrowed to a category and to the
samples whose prompt, reference or answers contain a text."""

from django.db.models import Q

from evals.models import GoldenSample, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256
from evals.selectors.answers import answer_order
from evals.selectors.generations import generations_of

# The longest text a reviewer may filter answers by.
ANSWER_TEXT_MAX = 200


def answer_positions(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, order: str, *, category: str = "", text: str = ""
) -> list[int]:
    """`answer_order`'s positions, keeping only the samples of `category` (when given) whose prompt,
    reference, text or either side's answer contains `text` (when given; case-insensitive)."""
    positions = answer_order(candidate, baseline, order)
    if not category and not text:
        return positions
    wanted = _positions_matching(candidate, baseline, category, text)
    return [position for position in positions if position in wanted]


def _positions_matching(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, category: str, text: str
) -> set[int]:
    """Dataset positions of the samples in `category` that contain `text` as asked or in an answer (two
    queries, four with `text`: one per side's answers)."""
    samples = GoldenSample.objects.filter(dataset_id=candidate.dataset_id)
    if category:
        samples = samples.filter(category=category)
    if not text:
        return set(samples.values_list("position", flat=True))
    asked = (
        Q(prompt__icontains=text) | Q(messages__icontains=text) | Q(reference__icontains=text) | Q(text__icontains=text)
    )
    found = set(samples.filter(asked).values_list("position", flat=True))
    answered: set[str] = set()
    for snapshot in (candidate, baseline):
        generations = generations_of(snapshot)
        if generations is not None:
            answered.update(generations.filter(text__icontains=text).values_list("prompt_sha256", flat=True))
    if answered:
        for position, prompt, messages in samples.values_list("position", "prompt", "messages"):
            if position in found or not (prompt or messages):
                continue
            if prompt_sha256(messages_of({"prompt": prompt, "messages": messages})) in answered:
                found.add(position)
    return found


def answer_categories(snapshot: MetricSnapshot) -> list[str]:
    """The categories of the snapshot's dataset, sorted (one query)."""
    return list(
        GoldenSample.objects.filter(dataset_id=snapshot.dataset_id)
        .exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )
