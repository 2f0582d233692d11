"""In Chromium at 1280 and 1920 px: every page of the product opens without a console error and nothing
overflows its card (each element's box ends inside its card, unless inside something that scrolls
sideways, like a wide table in its wrapper); the tables read across (verdicts, thresholds, artifact lists)
fit their card without scrolling, with long branch names, addresses and links in the data."""

import pytest
from django.urls import reverse

from driftboard.accounts.services import api_token_create
from evals.models import DriftVerdict, EvalRun, Threshold
from evals.services.experiments import results_import
from registry import services as registry_services
from registry.models import Alert, Artifact, ModelFamily, PromotionEvent
from tests.experiments.conftest import DATA
from tests.factories import ExperimentFactory
from tests.generation.answer_board import build_answer_board
from tests.judges.conftest import judge_server  # noqa: F401  (fixture)
from tests.judges.test_judge_preference_verdicts import pairwise  # noqa: F401  (fixture)
from tests.labels.conftest import judged_candidate  # noqa: F401  (fixture)
from tests.traffic.board import build_traffic_board

pytestmark = pytest.mark.browser

WIDTHS = (1280, 1920)
# Charts draw after the page loads: the boxes are measured once every one of them is drawn.
CHARTS_DRAWN = """() => [...document.querySelectorAll('[data-figure], #traffic-mean-chart, #traffic-shift-chart, #traffic-mix-chart')]
  .every((chart) => chart.dataset.rendered === 'true')"""

# The page's own width: wider than the window, it scrolls sideways.
PAGE_WIDER = "() => document.documentElement.scrollWidth"
# The tables a reviewer reads across: they fit their card, no column out of view behind a sideways scroll.
KEY_TABLES = "#verdicts, #thresholds, table:has(td.headline)"
SCROLLED_TABLES = """(selector) => [...document.querySelectorAll(selector)]
  .filter((table) => table.parentElement.scrollWidth > table.parentElement.clientWidth + 1)
  .map((table) => `table ${table.id || 'of artifacts'} is ${table.parentElement.scrollWidth} px wide`
    + ` in ${table.parentElement.clientWidth} px`)"""
# For every card, the elements and runs of text drawn past its right edge (by more than a pixel) outside
# anything that scrolls sideways; hidden ones (no box) are skipped.
OVERFLOWING = """() => {
  const scrollsSideways = (node, card) => {
    for (let up = node.parentElement; up && up !== card; up = up.parentElement) {
      const overflow = getComputedStyle(up).overflowX;
      if (overflow === 'auto' || overflow === 'scroll') return true;
    }
    return false;
  };
  const name = (element) => element.tagName.toLowerCase() + (element.id ? '#' + element.id : '')
    + [...element.classList].map((c) => '.' + c).join('');
  const boxOf = (node) => {
    if (node.nodeType === Node.ELEMENT_NODE) return node.getBoundingClientRect();
    const range = document.createRange();
    range.selectNodeContents(node);
    return range.getBoundingClientRect();
  };
  const found = [];
  for (const card of document.querySelectorAll('.card')) {
    const edge = card.getBoundingClientRect().right + 1;
    const walker = document.createTreeWalker(card, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.nodeType === Node.TEXT_NODE && !node.textContent.trim()) continue;
      const box = boxOf(node);
      if (box.width === 0 && box.height === 0) continue;
      if (box.right > edge && !scrollsSideways(node, card)) {
        const title = card.id || card.querySelector('h2, h3')?.textContent.trim() || name(card);
        const what = node.nodeType === Node.TEXT_NODE ? 'text in ' + name(node.parentElement) : name(node);
        found.push(`${title}: ${what} ends at ${Math.round(box.right)} > ${Math.round(edge)}`
          + ` (${node.textContent.trim().slice(0, 50)})`);
      }
    }
  }
  return found;
}"""


# Long unbroken words as real data has them: bot branches, hashes, paths, addresses, links.
BRANCH = "renovate/weights-" + "9f86d081884c7d659a2feaa0c55ad015" * 2
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PATH = "/srv/driftboard/objects/" + SHA256 + "/model.safetensors"
OWNER = "ml-platform-oncall@evaluation-infrastructure.example.com"
LINK = "https://wiki.example.com/evaluation/thresholds/support-gpt/bits-per-byte/why-three-percent-not-two"


def attention(board) -> None:
    """What Home and the Alerts page list (an open alert, a held candidate, red traffic drift), with the
    long words real data has."""
    held = board.candidate("amber")
    Artifact.objects.filter(pk=held.pk).update(branch=BRANCH)
    PromotionEvent.objects.create(
        artifact=held,
        action=PromotionEvent.Action.HOLD,
        reason=f"Held for review: branch {BRANCH} is not the base branch main",
    )
    registry_services.tags_set(
        artifact=board.production,
        tags={"traffic_drift": "red", "traffic_drift.reason": f"answer length worse by 31 % on {PATH}"},
    )
    registry_services.alert_raise(
        artifact=board.candidate("red"),
        severity=Alert.Severity.CRITICAL,
        title="support-gpt halted: bits per byte worse by 8.0 %",
        message=f"bits per byte +8.0 % (limit +3 %) on weights sha256 {SHA256}",
        payload={},
    )
    EvalRun.objects.filter(status=EvalRun.Status.FAILED).update(error=f"FileNotFoundError: {PATH}")
    Threshold.objects.filter(pk=board.threshold.pk).update(owner=OWNER, rationale=f"See {LINK}")
    ModelFamily.objects.filter(pk=board.family.pk).update(description=f"Support-ticket assistant, see {LINK}")


def pages(board, answers, traffic, judged, experiment) -> dict[str, str]:
    family = board.family.slug
    return {
        "home": reverse("home"),
        "alerts": reverse("alert-list"),
        "families": reverse("family-list"),
        "family": reverse("family-detail", args=[family]),
        "compare": reverse("family-compare", args=[family]) + f"?a={board.production.pk}&b={board.candidate('red').pk}",
        "traffic": reverse("family-traffic", args=[traffic.family.slug]) + f"?window={traffic.moved.number}",
        "judges": reverse("family-judges", args=[judged.family.slug]),
        "review queue": reverse("artifact-review", args=[judged.pk]),
        "review with answers": answers.review_url(),
        "answers explorer": reverse("artifact-answers", args=[answers.candidate.pk]),
        "artifacts": reverse("artifact-list"),
        "thresholds": reverse("threshold-list"),
        "threshold": board.threshold.get_absolute_url(),
        "queues": reverse("queues"),
        "experiments": reverse("experiment-list"),
        "experiment": reverse("experiment-detail", args=[experiment.slug]),
        "api tokens": reverse("api-tokens"),
    }


def test_every_page_fits_its_cards_without_console_errors(
    open_page,
    reviewer,
    live_board,
    judged_candidate,  # noqa: F811
    tmp_path,
):
    attention(live_board)
    answers = build_answer_board()
    flipped = DriftVerdict.objects.get(artifact=answers.candidate, metric="exact_match")
    flips = {"right_to_wrong": 5, "wrong_to_right": 0, "p_value": 0.0625}
    DriftVerdict.objects.filter(pk=flipped.pk).update(comparison={**flipped.comparison, "flips": flips})
    traffic = build_traffic_board(tmp_path)
    *_, judged = judged_candidate
    experiment = ExperimentFactory(
        slug="nanochat-h100", hardware="1× H100 80GB", time_budget_s=300, description=f"Results of {LINK}"
    )
    results_import(experiment=experiment, data=(DATA / "results.tsv").read_bytes())
    api_token_create(user=reviewer, name="ci " + "submit-" * 12, scope="submit")
    page, errors = open_page(reviewer)

    problems: dict[str, list[str]] = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages(live_board, answers, traffic, judged, experiment).items():
            response = page.goto(url)
            assert response.ok, f"{name}: HTTP {response.status}"
            page.wait_for_load_state("networkidle")
            page.wait_for_function(CHARTS_DRAWN, timeout=15_000)
            found = page.evaluate(OVERFLOWING) + page.evaluate(SCROLLED_TABLES, KEY_TABLES)
            found += [f"console: {error}" for error in errors]
            if page.evaluate(PAGE_WIDER) > width:
                found.append(f"the page is {page.evaluate(PAGE_WIDER)} px wide")
            errors.clear()
            if found:
                problems[f"{name} at {width} px"] = found
    assert problems == {}


def test_the_check_finds_text_past_a_cards_edge_but_not_in_a_table_that_scrolls(open_page, reviewer, live_board):
    page, errors = open_page(reviewer)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(reverse("home"))
    assert page.evaluate(OVERFLOWING) == []

    page.evaluate("""() => {
      const card = document.querySelector('.card');
      const wrap = document.createElement('div');
      wrap.className = 'table-wrap';
      wrap.innerHTML = '<table><tr><td>' + 'w'.repeat(400) + '</td></tr></table>';
      card.appendChild(wrap);
    }""")
    assert page.evaluate(OVERFLOWING) == []
    page.evaluate(
        "() => { const p = document.createElement('p'); p.textContent = 'x'.repeat(400); "
        "document.querySelector('.card').appendChild(p); }"
    )
    found = page.evaluate(OVERFLOWING)
    assert len(found) == 1 and "text in p" in found[0] and "xxxx" in found[0]
    assert errors == []
