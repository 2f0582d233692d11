"""Dashboard pages (server-rendered; charts get their data through json_script)."""

import copy
import datetime
import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST

from driftboard.dashboard import charts, cost_charts, selectors
from driftboard.queues import queue_depths
from driftboard.roles import can_review
from evals import compare, costs
from evals import selectors as evals_selectors
from evals.exports import samples_export_response
from evals.models import Acknowledgement, DriftVerdict, EvalRun, MetricSnapshot, Threshold
from evals.scoring import drift
from evals.scoring.golden_io import GoldenFileError
from evals.scoring.scorers import METRICS
from evals.services import attention as attention_services
from evals.services import threshold_backtest
from evals.services import traffic as traffic_services
from evals.services.datasets import DatasetChangeRefused
from registry import selectors as registry_selectors
from registry import services as registry_services
from registry.models import Alert, Artifact, ModelFamily, PromotionEvent

ARTIFACTS_PER_PAGE = 25
LIST_FILTERS = ("family", "flag", "stage", "branch", "commit")
MAX_ID_DIGITS = 18  # below 2**63, the largest id any database column holds
UNFINISHED_RUNS = (*EvalRun.WAITING, EvalRun.Status.RUNNING)
ACTIONS = {
    "promote": (registry_services.artifact_promote, "promoted to production"),
    "halt": (registry_services.artifact_halt, "halted"),
}


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, strip=True)


def _limit_in_percent(metric: str) -> bool:
    """Whether a relative limit on `metric` reads in percent (2 %), as the pages word it, rather than in
    the metric's own units (a metric whose deltas are absolute)."""
    spec = METRICS.get(metric)
    return spec is None or not spec.absolute


class BacktestForm(forms.Form):
    """A draft of a threshold, its limit in the units the page words it in: a relative limit in percent (2
    for "2 %"), or in the metric's units when its deltas are absolute; a band in σ; a floor in units."""

    rule = forms.ChoiceField(choices=Threshold.Rule.choices)
    limit = forms.FloatField()
    severity = forms.ChoiceField(choices=Threshold.Severity.choices)

    def __init__(self, *args, threshold: Threshold, **kwargs) -> None:
        self.in_percent = _limit_in_percent(threshold.metric)
        initial = {"rule": threshold.rule, "limit": self.shown_limit(threshold.rule, threshold.limit)}
        super().__init__(*args, initial=initial | {"severity": threshold.severity}, **kwargs)

    def shown_limit(self, rule: str, limit: float) -> float:
        """A stored limit in the form's units (0.02 → 2 for a relative limit in percent)."""
        percent = rule == Threshold.Rule.RELATIVE and self.in_percent
        return float(f"{100 * limit:.12g}") if percent else limit

    @property
    def units(self) -> str:
        relative = "in % (2 = 2 %)" if self.in_percent else "in the metric's units"
        return f"relative rule: {relative}; band: in σ; floor or ceiling: in the metric's units"

    def draft_of(self, threshold: Threshold) -> Threshold:
        """An unsaved copy of the record with the drafted fields; never written."""
        draft = copy.copy(threshold)
        for name, value in self.cleaned_data.items():
            setattr(draft, name, value)
        if draft.rule == Threshold.Rule.RELATIVE and self.in_percent:
            draft.limit = self.cleaned_data["limit"] / 100
        try:
            draft.clean()
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                if name == "limit" and draft.rule == Threshold.Rule.RELATIVE and self.in_percent:
                    errors = ["A relative limit is a percentage from 0 up to 100 (2 = 2 %)."]
                self.add_error(name if name in self.fields else None, errors)
        return draft


def _int_or_none(raw: str | None) -> int | None:
    """A row id from the query string; anything else (`10**30`, `²`, 40 digits) is no id at all."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= MAX_ID_DIGITS else None


def _chart(chart_id: str, figure: dict, **extra) -> dict:
    return {"id": chart_id, "figure": figure, "label": figure["layout"]["title"]["text"], **extra}


# Home and families


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "families": selectors.families_with_production(),
        "candidates": selectors.with_headlines(selectors.latest_candidates()),
        "flag_counts": selectors.flag_counts(),
        **_attention(),
    }
    return render(request, "dashboard/home.html", context)


def _attention() -> dict:
    """What waits for a reviewer, shown on Home and the Alerts page: open alerts, red traffic drift on
    production, held candidates, failed runs, uncalibrated judges and thresholds overdue for review."""
    open_alerts = registry_selectors.alert_list(closed=False)
    return {
        "open_alerts": list(open_alerts[: selectors.RECENT_LIMIT]),
        "open_alert_count": open_alerts.count(),
        "held_candidates": list(registry_selectors.held_candidates()),
        "traffic_drift": registry_selectors.production_traffic_drift(),
        "failed_runs": selectors.failed_runs(unresolved=True),
        "uncalibrated_judges": selectors.uncalibrated_judges(),
        "overdue_thresholds": selectors.overdue_thresholds(unacknowledged=True),
    }


class AcknowledgeForm(forms.Form):
    note = forms.CharField(max_length=2000, strip=True, required=False)


CLOSED_SHOWN = 50


@login_required
def alert_list(request: HttpRequest) -> HttpResponse:
    """Open alerts with an acknowledgement form each, then the latest closed ones; under each, what its
    channels were sent (the delivery log)."""
    context = {
        **_attention(),
        "open_alerts": list(registry_selectors.alert_list_with_deliveries(closed=False)),
        "closed_alerts": list(registry_selectors.alert_list_with_deliveries(closed=True)[:CLOSED_SHOWN]),
        "acknowledgements": evals_selectors.acknowledgements_recent(),
    }
    return render(request, "dashboard/alert_list.html", context)


def _attention_title(kind: str, key: str) -> str | None:
    """How "Needs attention" words the item of this kind and key, while it is listed; None when it is not."""
    if kind == Acknowledgement.Kind.RUN:
        run = selectors.unresolved_failed_run(key)
        return f"{run.artifact} on {run.dataset}: run failed" if run is not None else None
    if kind == Acknowledgement.Kind.JUDGE:
        judges = [row for row in selectors.uncalibrated_judges() if row.key == key]
        if judges:
            configuration = judges[0].judge.configuration
            return f"{judges[0].family.slug}: {configuration.identity} ({configuration.mode})"
        return None
    if kind == Acknowledgement.Kind.THRESHOLD:
        overdue = [t for t in selectors.overdue_thresholds(unacknowledged=True) if t.attention_key == key]
        return f"{overdue[0]}, overdue since {overdue[0].review_by:%Y-%m-%d}" if overdue else None
    return None


@login_required
@require_POST
def attention_acknowledge(request: HttpRequest, kind: str) -> HttpResponse:
    """A reviewer acknowledges a failed run, an uncalibrated judge or an overdue threshold, with a note."""
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may acknowledge what needs attention.")
    form = AcknowledgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A note is at most 2000 characters.")
        return redirect("alert-list")
    key = request.POST.get("key", "")
    title = _attention_title(kind, key)
    if title is None:
        messages.error(request, "That item is no longer listed under Needs attention: nothing was acknowledged.")
        return redirect("alert-list")
    try:
        attention_services.attention_acknowledge(
            kind=kind, key=key, title=title, user=request.user, note=form.cleaned_data["note"]
        )
    except attention_services.AcknowledgementRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Acknowledged: {title}.")
    return redirect("alert-list")


@login_required
@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may acknowledge an alert.")
    alert = get_object_or_404(Alert, pk=pk)
    form = AcknowledgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A note is at most 2000 characters.")
        return redirect("alert-list")
    registry_services.alert_acknowledge(alert=alert, actor=request.user, note=form.cleaned_data["note"])
    messages.success(request, f"Alert “{alert.title}” acknowledged.")
    return redirect("alert-list")


@login_required
def family_list(request: HttpRequest) -> HttpResponse:
    """Every family with its production weights, each linking to its time series."""
    return render(request, "dashboard/family_list.html", {"families": selectors.families_with_production()})


@login_required
def family_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """The family's time series, one chart per metric × dataset; ?metric=&dataset= narrows to one."""
    family = get_object_or_404(ModelFamily, slug=slug)
    metric = request.GET.get("metric", "")
    dataset_id = _int_or_none(request.GET.get("dataset"))
    everything = request.GET.get("all") == "1"
    last = None if everything else selectors.SERIES_WINDOW
    series = selectors.family_series(family, metric=metric, dataset_id=dataset_id, last=last)
    total = family.artifacts.count()
    query = request.GET.copy()
    query["all"] = "1"
    context = {
        "family": family,
        "production": selectors.family_production(family),
        "focused": bool(metric or dataset_id),
        "charts": [_series_chart(family, s) for s in series],
        "window": None if everything or total <= selectors.SERIES_WINDOW else selectors.SERIES_WINDOW,
        "artifact_total": total,
        "all_url": f"?{query.urlencode()}",
        "cost_charts": _cost_charts(family),
        "false_confidence": evals_selectors.false_confidence(family),
    }
    return render(request, "dashboard/family_detail.html", context)


def _cost_charts(family: ModelFamily) -> list[dict]:
    family_costs = costs.family_costs(family)
    if not family_costs.per_version:
        return []
    return [
        _chart("cost-per-version", cost_charts.cost_per_version_figure(family_costs)),
        _chart("cost-per-week", cost_charts.cost_per_week_figure(family_costs)),
    ]


POINT_URL = reverse_lazy("artifact-detail", args=[0])


def _series_chart(family: ModelFamily, series: selectors.Series) -> dict:
    focus_query = urlencode({"metric": series.metric, "dataset": series.dataset_id})
    return _chart(
        f"series-{series.key}",
        charts.series_figure(series),
        point_url=str(POINT_URL).replace("/0/", "/{id}/"),
        compare_url=f"{reverse('family-compare', args=[family.slug])}?{focus_query}",
        focus_url=f"?{focus_query}",
    )


@dataclass(frozen=True)
class ComparedRow:
    """One metric × dataset of a comparison, worded like a verdict row; relative figures in percent."""

    compared: compare.MetricComparison
    focus_url: str

    @property
    def metric_label(self) -> str:
        return evals_selectors.metric_label(self.compared.metric)

    @property
    def relative_undefined(self) -> bool:
        """Scored alike, but a's value is 0 on a metric whose change is relative: there is no number to
        give, which is not the "scored differently" of an incomparable pair."""
        compared = self.compared
        spec = METRICS.get(compared.metric)
        if compared.comparison is not None or spec is None or spec.absolute or compared.a.value != 0:
            return False
        return drift.fingerprints_comparable(compared.b.fingerprint, compared.a.fingerprint, spec=spec)[0]

    @property
    def unchanged_at_zero(self) -> bool:
        """Both versions at 0 (no match at all, say): no change."""
        return self.relative_undefined and self.compared.b.value == 0

    @property
    def delta_text(self) -> str:
        c = self.compared.comparison
        if c is None and self.unchanged_at_zero:
            return "no change (0 = 0)"
        return evals_selectors.change_text(self.compared.metric, c.delta) if c else "—"

    @property
    def ci_text(self) -> str:
        c = self.compared.comparison
        if c is None:
            return "—"
        metric = self.compared.metric
        return f"{evals_selectors.change_text(metric, c.ci_low)} to {evals_selectors.change_text(metric, c.ci_high)}"


@login_required
def family_compare(request: HttpRequest, slug: str) -> HttpResponse:
    """Version b against version a on the stored per-sample arrays: the statistics a verdict would give."""
    family = get_object_or_404(ModelFamily, slug=slug)
    versions = list(family.artifacts.order_by("-version").values_list("pk", "version", "commit_sha"))
    a_id, b_id = _int_or_none(request.GET.get("a")), _int_or_none(request.GET.get("b"))
    defaulted = "a" not in request.GET and "b" not in request.GET
    if defaulted:
        # Nothing picked: the newest candidate against its baseline, never a version against itself.
        a_id, b_id = evals_selectors.compare_default(family) or (None, None)
    context = {
        "family": family,
        "versions": versions,
        "a_id": a_id,
        "b_id": b_id,
        "defaulted": defaulted and a_id is not None,
        "result": None,
        "same_picked": a_id is not None and a_id == b_id,
    }
    if a_id and b_id and a_id != b_id:
        artifacts = {a.pk: a for a in family.artifacts.select_related("family").filter(pk__in=[a_id, b_id])}
        if len(artifacts) != len({a_id, b_id}):
            raise Http404("Both versions must be artifacts of this family.")
        result = compare.versions_compare(a=artifacts[a_id], b=artifacts[b_id])
        focus = result.focus(request.GET.get("metric", ""), _int_or_none(request.GET.get("dataset")))
        query = {"a": a_id, "b": b_id}
        context |= {
            "result": result,
            "export_query": urlencode({"against": a_id}),
            "rows": [
                ComparedRow(m, f"?{urlencode({**query, 'metric': m.metric, 'dataset': m.dataset.pk})}")
                for m in result.metrics
            ],
            "focus": focus,
            "focus_label": evals_selectors.metric_label(focus.metric) if focus else "",
            **_compare_focus_context(result, focus),
        }
    return render(request, "dashboard/family_compare.html", context)


def _compare_focus_context(result: compare.VersionComparison, focus: compare.MetricComparison | None) -> dict:
    if focus is None:
        return {"distribution_charts": [], "regressions": []}
    pairs = evals_selectors.samples_paired(focus.b, focus.a)
    names = (f"v{result.a.version}", f"v{result.b.version}")
    distribution_charts = [
        _chart("chart-distribution", charts.distribution_figure(pairs, names)),
        _chart("chart-paired-deltas", charts.paired_delta_figure(pairs)),
    ]
    if focus.comparison.per_category:
        category_figure = charts.category_delta_figure(focus.comparison.per_category, focus.metric)
        distribution_charts.append(_chart("chart-categories", category_figure, wide=True))
    regressions = evals_selectors.samples_regressed_most(pairs, focus.dataset.pk, selectors.TOP_REGRESSIONS)
    return {
        "distribution_charts": distribution_charts,
        "regressions": [(row, row.change_text) for row in regressions],
    }


@login_required
def artifact_compare_picked(request: HttpRequest) -> HttpResponse:
    """The two rows ticked on the artifact list, older as a, newer as b, on their family's compare page."""
    picked = {pk for pk in map(_int_or_none, request.GET.getlist("pick")) if pk is not None}
    artifacts = list(Artifact.objects.filter(pk__in=picked).select_related("family").order_by("version"))
    if len(artifacts) != 2 or artifacts[0].family_id != artifacts[1].family_id:
        messages.error(request, "Tick exactly two versions of the same family to compare them.")
        return redirect("artifact-list")
    a, b = artifacts
    return redirect(f"{reverse('family-compare', args=[a.family.slug])}?{urlencode({'a': a.pk, 'b': b.pk})}")


@login_required
def family_traffic(request: HttpRequest, slug: str) -> HttpResponse:
    """The traffic tab: every window against the reference, and one window (?window=N) in detail."""
    family = get_object_or_404(ModelFamily, slug=slug)
    windows = list(evals_selectors.traffic_windows(family))
    number = _int_or_none(request.GET.get("window"))
    focus = next((w for w in windows if w.number == number), windows[-1] if windows else None)
    context = {
        "family": family,
        "windows": windows,
        "focus": focus,
        "surprising": evals_selectors.traffic_surprising(focus) if focus else [],
        "shares": focus.statistics.get("categories", []) if focus else [],
        "chart": evals_selectors.traffic_chart_data(windows),
        "build_form": BuildGoldenForm(),
    }
    return render(request, "dashboard/family_traffic.html", context)


class BuildGoldenForm(forms.Form):
    file = forms.FileField(help_text="The query log: JSONL, Parquet or CSV with text or prompt, optional category.")
    size = forms.IntegerField(min_value=1, max_value=100_000, initial=1000)
    min_per_category = forms.IntegerField(min_value=0, initial=20)
    outliers = forms.RegexField(regex=r"^\d+(\.\d+)?%?$", initial="5%", help_text="'5%' of the size, or a count.")
    seed = forms.IntegerField(required=False, min_value=0, help_text="Drawn and recorded when empty.")

    def recipe(self) -> traffic_services.GoldenRecipe:
        data = self.cleaned_data
        return traffic_services.GoldenRecipe(
            size=data["size"], min_per_category=data["min_per_category"], outliers=data["outliers"], seed=data["seed"]
        )


@login_required
@require_POST
def traffic_build_golden(request: HttpRequest, slug: str) -> HttpResponse:
    """A golden subset drawn from an uploaded log, with the production model's outliers, as the family's next golden version."""
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may change a golden set.")
    family = get_object_or_404(ModelFamily, slug=slug)
    form = BuildGoldenForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(
            request, "The golden subset was not built: " + "; ".join(e for es in form.errors.values() for e in es)
        )
        return redirect("family-traffic", slug=slug)
    upload = form.cleaned_data["file"]
    name = family.datasets[0] if family.datasets else f"{family.slug}-golden"
    try:
        dataset = traffic_services.golden_build(
            name=name, filename=upload.name, source=upload, recipe=form.recipe(), family=family, user=request.user
        )
    except (GoldenFileError, ValueError, DatasetChangeRefused) as exc:
        messages.error(request, f"The golden subset was not built: {exc}")
    else:
        built = f"{dataset} built: {dataset.sample_count} samples, seed {dataset.recipe['seed']}."
        messages.success(request, built + _pins_kept(dataset.name))
    return redirect("family-traffic", slug=slug)


def _pins_kept(name: str) -> str:
    pins = ", ".join(
        f"{f.slug} (v{f.dataset_pins.get(name, '?')})" for f in registry_selectors.families_gating_on(name)
    )
    return f" Families keep scoring their pinned version until it is moved: {pins}." if pins else ""


@login_required
@require_POST
def traffic_promote(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """A new golden version: the current set plus the window's most surprising samples."""
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may change a golden set.")
    family = get_object_or_404(ModelFamily, slug=slug)
    window = get_object_or_404(evals_selectors.traffic_windows(family), number=number)
    try:
        dataset = traffic_services.traffic_window_promote(window=window, user=request.user)
    except (GoldenFileError, DatasetChangeRefused) as exc:
        messages.error(request, f"Window {number} cannot be promoted: {exc}")
    else:
        promoted = f"Window {number} promoted: {dataset} ({dataset.sample_count} samples)."
        messages.success(request, promoted + _pins_kept(dataset.name))
    return redirect(window)


# Artifacts


@login_required
def artifact_list(request: HttpRequest) -> HttpResponse:
    filters = {name: request.GET.get(name, "").strip() for name in LIST_FILTERS}
    queryset = selectors.artifact_page_queryset({**filters, "drift_flag": filters["flag"]})
    page = Paginator(queryset, ARTIFACTS_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = selectors.with_headlines(list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "filtered": any(filters.values()),
        "choices": selectors.artifact_filter_choices(),
        "flags": [choice for choice in Artifact.DriftFlag.choices if choice[0]],
        "stages": Artifact.Stage.choices,
        "query_string": query.urlencode(),
    }
    return render(request, "dashboard/artifact_list.html", context)


@dataclass(frozen=True)
class VerdictRow:
    """A verdict as the review page words it; relative figures in percent."""

    verdict: DriftVerdict
    # The applied threshold's version as its own history counts them (1 = as first saved).
    threshold_version: int | None = None

    @property
    def metric_label(self) -> str:
        return evals_selectors.metric_label(self.verdict.metric)

    @property
    def title(self) -> str:
        return f"{self.metric_label} on {self.verdict.dataset}"

    @property
    def focus_url(self) -> str:
        if self.verdict.delta is None:
            return ""
        return "?" + urlencode({"metric": self.verdict.metric, "dataset": self.verdict.dataset_id})

    @property
    def shown_outcome(self) -> str:
        return evals_selectors.verdict_shown_outcome(self.verdict)

    @property
    def badge_flag(self) -> str:
        """The badge's colour: the shown outcome, except that 0 = 0 reads as no change (green) and a 0
        baseline alone as no relative change (neutral), not as the purple of versions scored differently."""
        if evals_selectors.unchanged_at_zero(self.verdict):
            return "green"
        if evals_selectors.relative_undefined(self.verdict):
            return "none"
        return self.shown_outcome

    @property
    def outcome_label(self) -> str:
        if evals_selectors.unchanged_at_zero(self.verdict):
            return "No change"
        if evals_selectors.relative_undefined(self.verdict):
            return "No relative change"
        return "not gated" if self.shown_outcome == evals_selectors.UNGATED else self.verdict.get_outcome_display()

    @property
    def add_threshold_url(self) -> str:
        """The admin's threshold form, filled in with this verdict's family, metric and dataset."""
        verdict = self.verdict
        query = {"family": verdict.artifact.family_id, "metric": verdict.metric, "dataset_name": verdict.dataset.name}
        return f"{reverse('admin:evals_threshold_add')}?{urlencode(query)}"

    @property
    def delta_text(self) -> str:
        if evals_selectors.unchanged_at_zero(self.verdict):
            return "no change (0 = 0)"
        return evals_selectors.change_text(self.verdict.metric, self.verdict.delta)

    @property
    def ci_text(self) -> str:
        if self.verdict.ci_low is None or self.verdict.ci_high is None:
            return "—"
        metric = self.verdict.metric
        return f"{evals_selectors.change_text(metric, self.verdict.ci_low)} to {evals_selectors.change_text(metric, self.verdict.ci_high)}"

    @property
    def band_text(self) -> str:
        position = self.verdict.band_position
        return "no band yet" if position is None else f"z = {position:+.2f}"

    @property
    def limit_text(self) -> str:
        """The applied threshold's limit in the sense of Δ: 'limit −2 %', 'band 3·σ', 'floor 0.9'."""
        threshold = self.verdict.threshold
        if threshold is None:
            return ""
        limit = evals_selectors.limit_text(self.verdict.metric, threshold.rule, threshold.limit)
        if threshold.rule == Threshold.Rule.RELATIVE:
            return f"limit −{limit}"
        if threshold.rule == Threshold.Rule.BAND:
            return f"band {limit}"
        spec = METRICS.get(self.verdict.metric)
        return f"{'floor' if spec is not None and spec.higher_is_better else 'ceiling'} {limit}"

    @property
    def decision_text(self) -> str:
        """'answer similarity −44.40 % (CI −57.00 % … −29.00 %, limit −10 %)': one deciding metric in a line."""
        verdict = self.verdict
        details = [f"CI {self.ci_text.replace(' to ', ' … ')}"] if verdict.ci_low is not None else []
        details += [self.limit_text] if self.limit_text else []
        return f"{self.metric_label} {self.delta_text}" + (f" ({', '.join(details)})" if details else "")

    @property
    def sampling_text(self) -> str:
        """'decided on 23 % of the golden set (n = 230 of 1,000)' when sequential sampling stopped early."""
        verdict = self.verdict
        if not verdict.stopped_early:
            return ""
        return (
            f"decided on {100 * verdict.fraction_used:.0f} % of the golden set "
            f"(n = {verdict.samples_used:,} of {verdict.samples_total:,})"
        )


@login_required
def artifact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The review page: facts, verdicts, distributions of one focused metric, runs and decisions."""
    try:
        artifact = selectors.artifact_review(pk)
    except Artifact.DoesNotExist as exc:
        raise Http404("No such artifact.") from exc
    verdicts = evals_selectors.verdicts_worst_first(artifact.verdicts.all())
    versions = selectors.threshold_version_numbers([v.threshold_history_id for v in verdicts])
    rows = [VerdictRow(v, threshold_version=versions.get(v.threshold_history_id)) for v in verdicts]
    metric, dataset_id = request.GET.get("metric", ""), _int_or_none(request.GET.get("dataset"))
    focus = _focus_row(rows, metric, dataset_id)
    order = _regression_order(request)
    runs = list(artifact.runs.all())
    events = list(artifact.events.all())
    context = {
        "artifact": artifact,
        "verdict_rows": rows,
        "decision": _decision(artifact, rows, events),
        "focus": focus,
        "focus_refused": _focus_refused(rows, metric, dataset_id, focus),
        "focus_tabs": [row for row in rows if row.focus_url],
        "order": order,
        "orders": _order_links(request, order),
        **_focus_context(focus.verdict if focus else None, order),
        "answers": _answers_regressed_most(artifact, focus.verdict, order) if focus else None,
        "answers_url": _review_answers_url(artifact, metric, focus.verdict.metric if focus else ""),
        "refused_answers_url": _review_answers_url(artifact, metric, fallback=False),
        "answer_diff": evals_selectors.verdict_answer_diff(focus.verdict) if focus else None,
        "runs": runs,
        "cost": costs.runs_cost(runs),
        "unfinished": any(run.status in UNFINISHED_RUNS for run in runs),
        "events": events,
        "traffic_drift": _traffic_drift(artifact),
        "pr_comment": selectors.comment_preview(artifact.pk),
    }
    return render(request, "dashboard/artifact_detail.html", context)


def _review_answers_url(artifact: Artifact, *metrics: str, fallback: bool = True) -> str:
    """The answers explorer on the first of `metrics` computed from answers (a metric with no change
    against the baseline too), else on the artifact's first such metric (unless not `fallback`); ""
    when none of the artifact's metrics was computed from generated answers."""
    answered = [s for s in artifact.snapshots.all() if evals_selectors.generation_metric(s)]  # prefetched
    for metric in metrics:
        snapshot = next((s for s in answered if metric and s.metric == metric), None)
        if snapshot is not None:
            return _answers_url(artifact, metric=metric, dataset=snapshot.dataset.name)
    return _answers_url(artifact) if answered and fallback else ""


@dataclass(frozen=True)
class TrafficDrift:
    window: str
    reason: str


def _traffic_drift(artifact: Artifact) -> TrafficDrift | None:
    """A red latest traffic window of a production artifact, told before anything else on its page."""
    tags = {tag.key: tag.value for tag in artifact.tags.all()}  # prefetched
    if artifact.stage != Artifact.Stage.PRODUCTION or tags.get("traffic_drift") != DriftVerdict.Outcome.RED:
        return None
    return TrafficDrift(window=tags.get("traffic_drift.window", ""), reason=tags.get("traffic_drift.reason", ""))


def _focus_row(rows: list[VerdictRow], metric: str, dataset_id: int | None) -> VerdictRow | None:
    """The verdict whose distributions are charted: the one asked for, else the worst gated one (rows
    come red first), else the first comparable one."""
    comparable = [row for row in rows if row.verdict.delta is not None]
    asked = [row for row in comparable if row.verdict.metric == metric and dataset_id in (None, row.verdict.dataset_id)]
    gated = [row for row in comparable if evals_selectors.verdict_gated_comparable(row.verdict)]
    return (asked or gated or comparable or [None])[0]


def _focus_refused(rows: list[VerdictRow], metric: str, dataset_id: int | None, focus: VerdictRow | None) -> str:
    """Why the metric asked for (?metric=) is not the one charted: it has no change against the baseline."""
    if not metric or (focus and focus.verdict.metric == metric):
        return ""
    asked = next(
        (row for row in rows if row.verdict.metric == metric and dataset_id in (None, row.verdict.dataset_id)), None
    )
    label = evals_selectors.metric_label(metric)
    if asked is None:
        return f"This artifact has no verdict on {label}."
    reason = asked.verdict.reasons[0] if asked.verdict.reasons else "it has no change against the baseline"
    return f"{label} on {asked.verdict.dataset} is not charted: {reason}"


@dataclass(frozen=True)
class Decision:
    """The review page's first line: the flag, what happened, the verdicts that decided it, and for a held
    candidate why it waits."""

    flag: str
    flag_label: str
    status_label: str
    deciding: list[VerdictRow]
    held_because: str


def _decision(artifact: Artifact, rows: list[VerdictRow], events: list) -> Decision | None:
    if not rows:
        return None
    outcomes = {row.shown_outcome for row in rows}
    worst = next((o for o in ("red", "amber") if o in outcomes), None)
    if worst:
        deciding = [row for row in rows if row.shown_outcome == worst]
    else:
        deciding = [row for row in rows if row.shown_outcome == DriftVerdict.Outcome.GREEN]
    hold = next((e for e in events if e.action == PromotionEvent.Action.HOLD), None)  # newest first
    return Decision(
        flag=artifact.drift_flag,
        flag_label=artifact.get_drift_flag_display() or "Not scored",
        status_label=artifact.get_status_display().lower(),
        deciding=deciding,
        held_because=hold.reason if hold and artifact.status == Artifact.Status.HELD else "",
    )


REGRESSION_ORDER_LABELS = {
    "regressed": "the metric's change",
    "absolute": "absolute change",
    "position": "position in the golden set",
}


def _regression_order(request: HttpRequest) -> str:
    order = request.GET.get("order", "")
    return order if order in evals_selectors.ANSWER_ORDERS else "regressed"


def _order_links(request: HttpRequest, current: str, anchor: str = "#distributions") -> list[tuple[str, str, bool]]:
    """(label, URL, current) for each way the regressed samples and answers can be ranked."""
    links = []
    for order in evals_selectors.ANSWER_ORDERS:
        query = request.GET.copy()
        query["order"] = order
        query.pop("page", None)
        links.append((REGRESSION_ORDER_LABELS[order], f"?{query.urlencode()}{anchor}", order == current))
    return links


def _focus_context(verdict: DriftVerdict | None, order: str = "regressed") -> dict:
    pairs = evals_selectors.verdict_samples_paired(verdict) if verdict else None
    if pairs is None or len(pairs.positions) == 0:
        return {"distribution_charts": [], "regressions": []}
    distribution_charts = [
        _chart("chart-distribution", charts.distribution_figure(pairs)),
        _chart("chart-paired-deltas", charts.paired_delta_figure(pairs)),
    ]
    if verdict.per_category:
        distribution_charts.append(
            _chart("chart-categories", charts.category_delta_figure(verdict.per_category, verdict.metric), wide=True)
        )
    return {
        "distribution_charts": distribution_charts,
        "regressions": evals_selectors.samples_regressed_most(
            pairs, verdict.dataset_id, selectors.TOP_REGRESSIONS, order
        ),
    }


FOLD_CHARS = 300  # a longer prompt, reference or answer is folded to its start
DIFF_MAX_WORDS = 4000  # longer answers are shown without the word diff, whose cost grows with both lengths
WORDS = re.compile(r"^\s+|\S+\s*")  # each word with the whitespace after it; leading blanks on their own
# An answer of whitespace only would be an empty-looking box: each character is shown by a mark.
WHITESPACE_MARKS = {"\n": "⏎", " ": "·", "\t": "→", "\r": "␍"}


@dataclass(frozen=True)
class Segment:
    """A run of text: `same` on both sides, `del` only in the baseline's answer, `ins` only in the candidate's."""

    kind: str
    text: str


@dataclass(frozen=True)
class ShownText:
    """A text as the review page shows it (escaped by the template), with the start it folds to when long."""

    segments: tuple[Segment, ...]
    preview: tuple[Segment, ...]
    length: int

    @classmethod
    def of(cls, segments: list[Segment]) -> "ShownText":
        length = sum(len(segment.text) for segment in segments)
        return cls(tuple(segments), _clipped(segments, FOLD_CHARS) if length > FOLD_CHARS else (), length)

    @property
    def changes_folded(self) -> bool:
        """Whether the fold hides marked words: the reviewer should open it."""
        return bool(self.preview) and _marked_chars(self.segments) > _marked_chars(self.preview)

    @property
    def blank_marks(self) -> str:
        """A text of whitespace only, made visible (⏎ newline, · space, → tab); "" for any other text."""
        text = "".join(segment.text for segment in self.segments)
        if not text or not text.isspace():
            return ""
        return "".join(WHITESPACE_MARKS.get(char, "·") for char in text)

    @classmethod
    def plain(cls, text: str) -> "ShownText":
        return cls.of([Segment("same", text)] if text else [])


def _clipped(segments: list[Segment], limit: int) -> tuple[Segment, ...]:
    clipped, left = [], limit
    for segment in segments:
        if left <= 0:
            break
        clipped.append(Segment(segment.kind, segment.text[:left]))
        left -= len(segment.text)
    return tuple(clipped)


def _marked_chars(segments: tuple[Segment, ...]) -> int:
    return sum(len(segment.text) for segment in segments if segment.kind != "same")


def _append(segments: list[Segment], kind: str, text: str) -> None:
    """Add text to a side; the whitespace after a change stays unmarked, and neighbours of one kind merge."""
    core = text if kind == "same" else text.rstrip()
    for piece_kind, piece in ((kind, core), ("same", text[len(core) :])):
        if not piece:
            continue
        if segments and segments[-1].kind == piece_kind:
            segments[-1] = Segment(piece_kind, segments[-1].text + piece)
        else:
            segments.append(Segment(piece_kind, piece))


def word_diff(baseline: str, candidate: str) -> tuple[list[Segment], list[Segment]]:
    """Both answers cut into segments, the words that differ marked (compared word by word, whitespace aside)."""
    old, new = WORDS.findall(baseline), WORDS.findall(candidate)
    left: list[Segment] = []
    right: list[Segment] = []
    if max(len(old), len(new)) > DIFF_MAX_WORDS:
        _append(left, "same", baseline)
        _append(right, "same", candidate)
        return left, right
    matcher = SequenceMatcher(None, [w.strip() for w in old], [w.strip() for w in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        same = op == "equal"
        _append(left, "same" if same else "del", "".join(old[i1:i2]))
        _append(right, "same" if same else "ins", "".join(new[j1:j2]))
    return left, right


@dataclass(frozen=True)
class ShownJudgement:
    """One judge reply about an answer as the review page shows it (escaped by the template, folded when long)."""

    judged: evals_selectors.JudgeReply
    reply: ShownText

    @classmethod
    def all_of(cls, replies: tuple[evals_selectors.JudgeReply, ...] | None) -> tuple["ShownJudgement", ...] | None:
        return None if replies is None else tuple(cls(reply, ShownText.plain(reply.reply)) for reply in replies)


@dataclass(frozen=True)
class AnswerPair:
    """One regressed prompt as the review page shows it; a side without a stored answer is None, and so
    are a side's judge replies when the metric is not a judge's."""

    compared: evals_selectors.AnswerComparison
    asked: ShownText
    reference: ShownText
    baseline: ShownText | None
    candidate: ShownText | None
    baseline_judged: tuple[ShownJudgement, ...] | None = None
    candidate_judged: tuple[ShownJudgement, ...] | None = None

    @classmethod
    def of(cls, compared: evals_selectors.AnswerComparison) -> "AnswerPair":
        baseline, candidate = compared.baseline, compared.candidate
        if baseline and candidate:
            old, new = word_diff(baseline.text, candidate.text)
            shown_old, shown_new = ShownText.of(old), ShownText.of(new)
        else:
            shown_old = ShownText.plain(baseline.text) if baseline else None
            shown_new = ShownText.plain(candidate.text) if candidate else None
        return cls(
            compared,
            ShownText.plain(compared.asked),
            ShownText.plain(compared.reference),
            shown_old,
            shown_new,
            baseline_judged=ShownJudgement.all_of(compared.baseline_judged),
            candidate_judged=ShownJudgement.all_of(compared.candidate_judged),
        )


def _answers_regressed_most(artifact: Artifact, verdict: DriftVerdict, order: str) -> list[AnswerPair] | None:
    """The focused verdict's most regressed answers side by side; None unless its metric comes from answers."""
    snapshot = next(
        (s for s in artifact.snapshots.all() if s.dataset_id == verdict.dataset_id and s.metric == verdict.metric),
        None,
    )
    if not evals_selectors.generation_metric(snapshot):
        return None
    rows = evals_selectors.verdict_answers_regressed_most(verdict, selectors.TOP_REGRESSIONS, order)
    return None if rows is None else [AnswerPair.of(row) for row in rows]


ANSWERS_PER_PAGE = 20


class AnswerFilterForm(forms.Form):
    """The answers explorer's query: which answers (dataset, metric), in what order, which of them."""

    dataset = forms.CharField(required=False, max_length=100)
    metric = forms.CharField(required=False, max_length=50)
    order = forms.ChoiceField(required=False, choices=[(order, order) for order in evals_selectors.ANSWER_ORDERS])
    category = forms.CharField(required=False, max_length=100)
    text = forms.CharField(required=False, max_length=evals_selectors.ANSWER_TEXT_MAX)

    def values(self) -> dict[str, str]:
        """The valid fields' values; a field that is not valid is left out ("")."""
        self.is_valid()
        return {name: self.cleaned_data.get(name) or "" for name in self.fields}


@dataclass(frozen=True)
class AnswerTab:
    """One dataset × metric the artifact has generated answers on, as a tab of the explorer."""

    label: str
    url: str
    current: bool


@login_required
def artifact_answers(request: HttpRequest, pk: int) -> HttpResponse:
    """The answers explorer: every answer of the artifact on one dataset and metric beside its baseline's,
    paginated, ranked by the metric's change, its absolute change or dataset position, narrowed to a
    category and to the samples containing a text, each judge reply under its answer."""
    artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
    asked = AnswerFilterForm(request.GET).values()
    try:
        source = evals_selectors.artifact_answer_source(artifact, dataset=asked["dataset"], metric=asked["metric"])
    except evals_selectors.AnswerChoiceError as exc:
        raise Http404(str(exc)) from exc
    if source is None:
        raise Http404(f"{artifact} has no generated answers: none of its metrics was computed from them.")
    candidate, baseline = source.candidate, source.baseline
    order = (asked["order"] or "regressed") if baseline else "position"
    positions = evals_selectors.answer_positions(
        candidate, baseline, order, category=asked["category"], text=asked["text"]
    )
    page = Paginator(positions, ANSWERS_PER_PAGE).get_page(request.GET.get("page"))
    pairs = [
        AnswerPair.of(row) for row in evals_selectors.answers_compared(candidate, baseline, list(page.object_list))
    ]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "artifact": artifact,
        "dataset": candidate.dataset,
        "metric": candidate.metric,
        "metric_label": evals_selectors.metric_label(candidate.metric),
        "baseline": baseline.artifact if baseline else None,
        "tabs": _answer_tabs(artifact, candidate),
        "order": order,
        "orders": _order_links(request, order, anchor="#answers") if baseline else [],
        "categories": evals_selectors.answer_categories(candidate),
        "filters": {"category": asked["category"], "text": asked["text"]},
        "filtered": bool(asked["category"] or asked["text"]),
        "page": page,
        "answers": pairs,
        "judged": any(pair.candidate_judged is not None for pair in pairs),
        "page_query": query.urlencode(),
    }
    return render(request, "dashboard/artifact_answers.html", context)


def _answer_tabs(artifact: Artifact, shown: MetricSnapshot) -> list[AnswerTab]:
    """Each dataset (newest version scored) × generation metric of the artifact, linking to its answers."""
    tabs, seen = [], set()
    for snapshot in evals_selectors.artifact_generation_snapshots(artifact):
        key = (snapshot.dataset.name, snapshot.metric)
        if key in seen:
            continue
        seen.add(key)
        query = urlencode({"dataset": snapshot.dataset.name, "metric": snapshot.metric})
        label = f"{evals_selectors.metric_label(snapshot.metric)} on {snapshot.dataset.name}"
        tabs.append(AnswerTab(label, f"?{query}#answers", snapshot.pk == shown.pk))
    return tabs


def _answers_url(artifact: Artifact, metric: str = "", dataset: str = "") -> str:
    """The answers explorer of the artifact, on a metric and dataset when given."""
    query = urlencode({key: value for key, value in (("dataset", dataset), ("metric", metric)) if value})
    return reverse("artifact-answers", args=[artifact.pk]) + (f"?{query}" if query else "")


@login_required
def artifact_samples_export(request: HttpRequest, pk: int, export_format: str) -> StreamingHttpResponse:
    """Every sample of the artifact with its values beside the baseline's, as CSV or JSONL (the API's rows);
    `?against=<id>`: beside another version of its family instead, as the compare page shows them."""
    artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
    against = None
    if "against" in request.GET:
        against_id = _int_or_none(request.GET.get("against"))
        against = Artifact.objects.filter(pk=against_id, family_id=artifact.family_id).first() if against_id else None
        if against is None:
            raise Http404("`against` must be another artifact of the same family.")
    return samples_export_response(artifact, export_format, against=against)


@login_required
def artifact_progress(request: HttpRequest, pk: int) -> JsonResponse:
    """Polled by static/js/progress.js while runs are unfinished."""
    try:
        artifact, runs = selectors.artifact_progress(pk)
    except Artifact.DoesNotExist as exc:
        raise Http404("No such artifact.") from exc
    return JsonResponse(
        {
            "status": artifact.get_status_display(),
            "drift_flag": artifact.drift_flag,
            # The page's header shows flag and stage too: it follows them without a reload.
            "drift_flag_label": artifact.get_drift_flag_display() or "Not scored",
            "stage": artifact.stage,
            "stage_label": artifact.get_stage_display(),
            "finished": not any(run.status in UNFINISHED_RUNS for run in runs),
            "runs": [_run_progress(run) for run in runs],
        }
    )


def _run_progress(run: EvalRun) -> dict:
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "samples_done": run.samples_done,
        "samples_total": run.samples_total,
        "percent": round(100 * run.progress, 1),
        "tokens_per_second": run.tokens_per_second,
        "error": run.error,
    }


@login_required
@require_POST
def artifact_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Reviewer override: promote or halt with a written reason; the service records the event."""
    if not can_review(request.user):
        raise PermissionDenied("Only reviewers and admins may promote or halt an artifact.")
    artifact = get_object_or_404(Artifact.objects.select_related("family"), pk=pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason to promote or halt an artifact.")
        return redirect(artifact)
    service, done = ACTIONS[action]
    service(artifact=artifact, reason=form.cleaned_data["reason"], actor=request.user)
    messages.success(request, f"{artifact} {done}.")
    return redirect(artifact)


# Thresholds


@login_required
def threshold_list(request: HttpRequest) -> HttpResponse:
    rows = [
        (threshold, evals_selectors.limit_text(threshold.metric, threshold.rule, threshold.limit))
        for threshold in evals_selectors.threshold_list()
    ]
    return render(request, "dashboard/threshold_list.html", {"rows": rows})


@login_required
def threshold_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        threshold = selectors.threshold_detail(pk)
    except Threshold.DoesNotExist as exc:
        raise Http404("No such threshold.") from exc
    form, backtest = _backtest(request, threshold)
    context = {
        "threshold": threshold,
        "limit": evals_selectors.limit_text(threshold.metric, threshold.rule, threshold.limit),
        "history": selectors.threshold_history(threshold),
        "form": form,
        "backtest": backtest,
    }
    return render(request, "dashboard/threshold_detail.html", context)


def _backtest(request: HttpRequest, threshold: Threshold) -> tuple[BacktestForm, dict | None]:
    """The what-if runs on GET: it only reads, and the drafted values stay in a shareable URL."""
    if "limit" not in request.GET:
        return BacktestForm(threshold=threshold), None
    form = BacktestForm(request.GET, threshold=threshold)
    if not form.is_valid():
        return form, None
    draft = form.draft_of(threshold)
    if form.errors:
        return form, None
    result = threshold_backtest(threshold=draft)
    changed = [row for row in result["artifacts"] if row["recorded"] != row["would_be"]]
    for row in changed:
        metric = threshold.metric
        row["delta_text"] = evals_selectors.change_text(metric, row["delta"])
        row["ci_text"] = (
            f"{evals_selectors.change_text(metric, row['ci_low'])} to {evals_selectors.change_text(metric, row['ci_high'])}"
            if row["ci_low"] is not None
            else "—"
        )
    recorded = Counter(row["recorded"] for row in result["artifacts"])
    outcomes = [(outcome, recorded.get(outcome, 0), count) for outcome, count in result["counts"].items()]
    return form, {"outcomes": outcomes, "total": len(result["artifacts"]), "changed": changed}


# Queues


@login_required
def queues(request: HttpRequest) -> HttpResponse:
    stats = selectors.queue_stats()
    storage = selectors.snapshot_storage_by_day()
    context = {
        "depths": queue_depths(),
        "status_counts": selectors.run_status_counts(),
        "running": selectors.runs_in_status(EvalRun.Status.RUNNING),
        "deferred": selectors.runs_in_status(EvalRun.Status.DEFERRED),
        "failed": selectors.failed_runs(limit=20),
        "stats": stats,
        "judge": {
            "day": evals_selectors.judge_totals(since=timezone.now() - datetime.timedelta(hours=24)),
            "ever": evals_selectors.judge_totals(),
        },
        "drafting": {
            "day": evals_selectors.drafting_totals(since=timezone.now() - datetime.timedelta(hours=24)),
            "ever": evals_selectors.drafting_totals(),
        },
        "storage_totals": {"rows": sum(rows for _, rows, _ in storage), "bytes": sum(b or 0 for _, _, b in storage)},
        "charts": [
            _chart("chart-throughput", charts.hourly_throughput_figure(stats.hourly_finished)),
            _chart("chart-storage", charts.storage_growth_figure(storage)),
        ],
    }
    return render(request, "dashboard/queues.html", context)
