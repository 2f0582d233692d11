"""The pull-request comment and commit status of an artifact, written from its verdicts and snapshots.

Everything taken from a dataset, a model or a reason is escaped: it can neither format, link, mention
nor break the Markdown table it sits in.
"""

import html
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
from django.urls import reverse

from driftboard import links
from evals import costs, selectors
from evals.models import DriftVerdict, MetricSnapshot, Threshold
from evals.scoring.scorers import METRICS
from registry.extensions import Report
from registry.models import Artifact, ModelFamily


def commit_state(artifact: Artifact) -> tuple[str, str]:
    """(state, description) in GitHub's vocabulary: pending, success, failure, error."""
    version = f"v{artifact.version}"
    if artifact.status == Artifact.Status.FAILED:
        return "error", f"{version}: scoring failed"
    flag = artifact.drift_flag
    if not flag:
        return "pending", f"{version} {artifact.get_status_display().lower()}: waiting for its verdict"
    summary = _worst_verdict_summary(artifact)
    if flag == Artifact.DriftFlag.GREEN:
        return "success", f"{version} green{summary}"
    if flag == Artifact.DriftFlag.RED:
        return "failure", f"{version} red{summary}"
    amber_fails = artifact.family.amber_check == ModelFamily.AmberCheck.FAILURE
    return ("failure" if amber_fails else "success"), f"⚠ {version} {flag}, held for review{summary}"


def _worst_verdict_summary(artifact: Artifact) -> str:
    verdicts = [v for v in artifact.verdicts.all() if v.delta is not None]
    if not verdicts:
        return ""
    worst = min(verdicts, key=lambda v: v.delta)
    return f": {selectors.metric_label(worst.metric)} {selectors.change_text(worst.metric, worst.delta)}"


FLAG_ICONS = {"green": "🟢", "amber": "🟠", "red": "🔴", "incomparable": "⚪", "ungated": "◻️"}
# A green that no limit judged is no approval: the table says so.
OUTCOME_WORDS = {"ungated": "not gated"}
QUANTILES = (("p5", 0.05), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95))
TOP_REGRESSED = 5
SNIPPET_CHARS = 80
REASON_CHARS = 300
TOP_ANSWERS = 3
ANSWER_CHARS = 300
COMMENT_CHARS_MAX = 60_000  # GitHub refuses comment bodies over 65 536 characters
# Markdown punctuation as HTML entities, so dataset text cannot format, link (nor autolink, hence : and .)
# or break a table cell.
MARKDOWN_ENTITIES = {char: f"&#{ord(char)};" for char in "\\`*_[]()|~$:."}
ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class MetricPair:
    """One verdict with the candidate's and the baseline's snapshots of the same metric and dataset."""

    verdict: DriftVerdict
    candidate: MetricSnapshot | None
    baseline: MetricSnapshot | None


def markdown_escape(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Text from a dataset or a reason, inert in a Markdown table cell: no HTML, formatting, @mention or #ref."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    # A zero-width space after @ and # keeps GitHub from notifying users or linking issues.
    flat = flat.replace("@", "@" + ZERO_WIDTH_SPACE).replace("#", "#" + ZERO_WIDTH_SPACE)
    return "".join(MARKDOWN_ENTITIES.get(char, char) for char in html.escape(flat, quote=False))


def code_span(text: str) -> str:
    """Inline code: nothing inside is interpreted, once backticks and line breaks are out."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def comment_render(*, artifact: Artifact, marker: str, page_url: str) -> str:
    """The pull-request comment for one artifact: flag, metric table, distributions, regressed samples
    and answers."""
    pairs = metric_pairs(artifact)
    tables = [
        marker,
        _comment_heading(artifact, pairs),
        _cost_note(artifact),
        _traffic_note(artifact),
        _verdict_table(pairs),
        _sampling_notes(pairs),
        _distribution_table(artifact, pairs),
        *(_regressed_table(pair) for pair in pairs),
    ]
    parts = [part for part in tables if part]
    link = f"[Open {markdown_escape(artifact.family.slug)} v{artifact.version} in Driftboard]({page_url})"
    room = COMMENT_CHARS_MAX - len("\n\n".join([*parts, link]))
    body = "\n\n".join([*parts, *_answer_blocks(artifact, pairs, room), link])
    return body if len(body) <= COMMENT_CHARS_MAX else body[:COMMENT_CHARS_MAX] + "\n\n… (shortened)"


def metric_pairs(artifact: Artifact) -> list[MetricPair]:
    verdicts = artifact.verdicts.select_related("dataset", "baseline", "threshold").order_by("dataset__name", "metric")
    snapshots = {(s.dataset_id, s.metric): s for s in artifact.snapshots.all()}
    pairs = []
    # Worst first, as the review page lists them: the heading's reasons open on what decided the outcome.
    for verdict in selectors.verdicts_worst_first(verdicts):
        baseline = None
        # A one-sample metric (a judge's preference) already compares with the baseline: the
        # baseline's own snapshot of it is against another baseline, nothing to show beside it.
        if verdict.baseline_id and not _one_sample(verdict.metric):
            baseline = MetricSnapshot.objects.filter(
                artifact_id=verdict.baseline_id, dataset_id=verdict.dataset_id, metric=verdict.metric
            ).first()
        pairs.append(MetricPair(verdict, snapshots.get((verdict.dataset_id, verdict.metric)), baseline))
    return pairs


def _one_sample(metric: str) -> bool:
    spec = METRICS.get(metric)
    return spec is not None and spec.one_sample


def _comment_heading(artifact: Artifact, pairs: list[MetricPair]) -> str:
    flag = artifact.drift_flag or "pending"
    lines = [
        f"### {FLAG_ICONS.get(flag, '⏳')} Driftboard: {code_span(artifact.family.slug)} "
        f"v{artifact.version} is **{flag}**",
        f"Commit `{artifact.short_sha}` · {artifact.get_status_display().lower()}" + _baseline_note(pairs),
    ]
    reasons = [reason for pair in pairs for reason in pair.verdict.reasons or []]
    lines += [f"- {markdown_escape(reason, REASON_CHARS)}" for reason in reasons[:5]]
    return "\n".join(lines)


def _cost_note(artifact: Artifact) -> str:
    cost = costs.artifact_cost(artifact)
    return f"Verdict {cost.text}" if cost else ""


def _traffic_note(artifact: Artifact) -> str:
    """The traffic moved under the production model: say so, since the golden set may no longer be the traffic."""
    window = selectors.traffic_latest_scored(artifact.family)
    if window is None or window.outcome not in ("amber", "red"):
        return ""
    reason = markdown_escape(window.reasons[0], REASON_CHARS) if window.reasons else ""
    version = f"v{window.artifact.version}" if window.artifact_id else "the production model"
    return (
        f"{FLAG_ICONS[window.outcome]} **The traffic moved**: on window {window.number} "
        f"({window.starts_at:%Y-%m-%d %H:%M} UTC) {version} is {window.outcome} against its golden set. {reason}"
    )


def _baseline_note(pairs: list[MetricPair]) -> str:
    baseline = next((pair.verdict.baseline for pair in pairs if pair.verdict.baseline), None)
    if baseline is None:
        return " · no production baseline to compare with yet"
    return f" · compared with v{baseline.version} (`{baseline.short_sha}`)"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _verdict_table(pairs: list[MetricPair]) -> str:
    if not pairs:
        return ""
    confidence = next((p.verdict.comparison.get("confidence") for p in pairs if p.verdict.comparison), None) or 0.95
    rows = [
        f"| Dataset | Metric | Candidate | Baseline | Δ | {confidence * 100:g} % CI of Δ | Threshold | Outcome |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    for pair in pairs:
        v = pair.verdict
        interval = (
            "—"
            if v.ci_low is None or v.ci_high is None
            else f"{selectors.change_text(v.metric, v.ci_low)} … {selectors.change_text(v.metric, v.ci_high)}"
        )
        outcome = selectors.verdict_shown_outcome(v)
        threshold = threshold_text(v)
        if outcome == selectors.UNGATED:
            threshold = f"none in force — [add one]({threshold_form_url(v)})"
        rows.append(
            f"| {markdown_escape(v.dataset.name)} | {selectors.metric_label(v.metric)} | {_number(v.candidate_value)} "
            f"| {_number(v.baseline_value)} | {_change_and_flips(v)} | {interval} | {threshold} "
            f"| {FLAG_ICONS.get(outcome, '')} {OUTCOME_WORDS.get(outcome, outcome)} |"
        )
    return "\n".join(rows)


def _change_and_flips(verdict: DriftVerdict) -> str:
    """'-0.021 (12 right→wrong, 4 wrong→right · McNemar p = 0.077)' for a 0/1 metric, the change alone
    for others."""
    flips = selectors.flips_text(verdict.comparison)
    change = selectors.change_text(verdict.metric, verdict.delta)
    return f"{change} ({flips})" if flips else change


def threshold_form_url(verdict: DriftVerdict) -> str:
    """The admin's threshold form, filled in with the verdict's family, metric and dataset."""
    query = urlencode(
        {"family": verdict.artifact.family_id, "metric": verdict.metric, "dataset_name": verdict.dataset.name}
    )
    return f"{links.absolute_url(reverse('admin:evals_threshold_add'))}?{query}"


def threshold_text(verdict: DriftVerdict) -> str:
    """The threshold as it was when the verdict applied it (its history record), not as edited since."""
    applied = verdict.threshold
    if verdict.threshold_history_id:
        applied = Threshold.history.filter(history_id=verdict.threshold_history_id).first() or applied
    if applied is None:
        return "none"
    rule = {
        Threshold.Rule.RELATIVE: f"{selectors.limit_text(verdict.metric, applied.rule, applied.limit)} worse",
        Threshold.Rule.BAND: f"±{applied.limit:g} σ band over {applied.band_window} baselines",
        Threshold.Rule.ABSOLUTE: f"absolute limit {applied.limit:g}",
    }.get(applied.rule, applied.rule)
    severity = "red" if applied.severity == Threshold.Severity.BLOCK else "amber"
    return f"{rule} → {severity}"


def _sampling_notes(pairs: list[MetricPair]) -> str:
    notes = {}
    for pair in pairs:
        v = pair.verdict
        if v.stopped_early and v.samples_total:
            notes[v.dataset.name] = (
                f"Decided on {v.fraction_used * 100:.0f} % of the golden set (n = {v.samples_used} of "
                f"{v.samples_total}) for {code_span(v.dataset.name)}: the verdict was clear before the end."
            )
    return "\n".join(notes.values())


def _quantile_row(label: str, snapshot: MetricSnapshot | None) -> str:
    if snapshot is None:
        return f"| {label} | 0 |" + " — |" * len(QUANTILES)
    _, values = selectors.snapshot_per_sample_values(snapshot)
    if not len(values):
        return f"| {label} | 0 |" + " — |" * len(QUANTILES)
    cells = " | ".join(f"{q:.4f}" for q in np.quantile(values, [fraction for _, fraction in QUANTILES]))
    return f"| {label} | {len(values)} | {cells} |"


def _distribution_table(artifact: Artifact, pairs: list[MetricPair]) -> str:
    if not pairs:
        return ""
    header = "| Per-sample values | n | " + " | ".join(name for name, _ in QUANTILES) + " |"
    rows = [header, "|---|--:|" + "--:|" * len(QUANTILES)]
    for pair in pairs:
        v = pair.verdict
        what = f"{markdown_escape(v.dataset.name)} · {selectors.metric_label(v.metric)}"
        if v.baseline and _one_sample(v.metric):
            rows.append(_quantile_row(f"{what} · v{artifact.version} against v{v.baseline.version}", pair.candidate))
            continue
        rows.append(_quantile_row(f"{what} · candidate v{artifact.version}", pair.candidate))
        if v.baseline:
            rows.append(_quantile_row(f"{what} · baseline v{v.baseline.version}", pair.baseline))
    return "<details><summary>Per-sample distributions</summary>\n\n" + "\n".join(rows) + "\n\n</details>"


def _regressed_table(pair: MetricPair) -> str:
    if pair.candidate is None or pair.baseline is None or pair.verdict.metric not in METRICS:
        return ""
    v = pair.verdict
    worst = selectors.samples_regressed_most(
        selectors.samples_paired(pair.candidate, pair.baseline), v.dataset_id, TOP_REGRESSED
    )
    if not worst:
        return ""
    rows = [
        f"**Samples that regressed most** · {markdown_escape(v.dataset.name)} · {selectors.metric_label(v.metric)}",
        "",
        "| Sample | Category | Candidate | Baseline | Δ | Text |",
        "|---|---|--:|--:|--:|---|",
    ]
    for row in worst:
        rows.append(
            f"| {markdown_escape(row.sample_id, 40)} | {markdown_escape(row.category, 30)} | {row.candidate:.4f} "
            f"| {row.baseline:.4f} | {row.change_text} | {markdown_escape(row.text)} |"
        )
    return "\n".join(rows)


# Every generation metric of a dataset is computed from the same answers, so one block per dataset
# shows them all. answer_similarity ranks them best: it is graded, where the 0/1 checks tie on every
# miss and cannot tell which answers got most worse.
RANKING_ANSWER_METRIC = "answer_similarity"


def _answer_pairs(pairs: list[MetricPair]) -> list[MetricPair]:
    """Per dataset, the generation metric with a baseline that ranks its answers."""
    chosen: dict[int, MetricPair] = {}
    for pair in pairs:
        v = pair.verdict
        if pair.baseline is None or v.metric not in METRICS or not selectors.generation_metric(pair.candidate):
            continue
        if v.dataset_id not in chosen or v.metric == RANKING_ANSWER_METRIC:
            chosen[v.dataset_id] = pair
    return list(chosen.values())


def _answer_blocks(artifact: Artifact, pairs: list[MetricPair], room: int) -> list[str]:
    """The answers blocks that fit in `room` characters: a block is left out whole, never cut (an
    unclosed <details> would fold the rest of the comment into it)."""
    blocks = []
    for pair in _answer_pairs(pairs):
        block = _answers_block(artifact, pair)
        if block and len(block) + 2 <= room:
            blocks.append(block)
            room -= len(block) + 2
    return blocks


def _answers_block(artifact: Artifact, pair: MetricPair) -> str:
    v = pair.verdict
    rows = selectors.answers_regressed_most(pair.candidate, pair.baseline, TOP_ANSWERS)
    if not rows:
        return ""
    label = selectors.metric_label(v.metric)
    title = f"The {len(rows)} answers that regressed most" if len(rows) > 1 else "The answer that regressed most"
    diff = selectors.answer_diff(pair.candidate, pair.baseline)
    lines = [f"{diff.sentence} (v{v.baseline.version} → v{artifact.version}).", ""] if diff else []
    lines += [f"<details><summary>{title} · {markdown_escape(v.dataset.name)} · {label}</summary>", ""]
    for row in rows:
        lines += [
            f"**{markdown_escape(row.sample_id, 40)}** · {row.change_text} · {label} "
            f"{_number(row.baseline_value)} → {_number(row.candidate_value)}",
            f"- Prompt: {markdown_escape(row.asked, ANSWER_CHARS)}",
            f"- Reference: {markdown_escape(row.reference, ANSWER_CHARS) or '—'}",
            f"- Baseline v{v.baseline.version}: {_answer_text(row.baseline)}",
            f"- Candidate v{artifact.version}: {_answer_text(row.candidate)}",
            "",
        ]
    return "\n".join([*lines, "</details>"])


def _answer_text(answer: selectors.Answer | None) -> str:
    if answer is None:
        return "*no stored answer*"
    text = markdown_escape(answer.text, ANSWER_CHARS) or "*empty*"
    return f"{text} ({answer.tokens} tokens, {markdown_escape(answer.finish, 16)})"


def artifact_report(artifact: Artifact, marker: str, page_url: str) -> Report:
    """The commit status, and the comment once the artifact has a verdict."""
    state, description = commit_state(artifact)
    comment = comment_render(artifact=artifact, marker=marker, page_url=page_url) if artifact.drift_flag else None
    return Report(state=state, description=description, comment=comment)
