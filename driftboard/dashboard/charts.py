"""Plotly figures as plain JSON-able dicts, built from selector output.

Per-sample arrays never reach the browser as such: distributions are binned here and series carry one
point per artifact. The page hands each figure to static/js/charts.js through json_script. Every text
that plotly draws (titles, categories, legend names, hover) goes through escape_text, as
static/js/experiments.js does in the browser.
"""

import datetime
import functools
import math

import numpy as np

from driftboard.dashboard.selectors import Series, SeriesPoint
from evals import selectors as evals_selectors
from evals.scoring.scorers import METRICS
from evals.selectors import PairedSamples

HISTOGRAM_BINS = 40
# Bin edges span these quantiles of both distributions; the few values beyond land in the end bins.
HISTOGRAM_QUANTILES = (0.005, 0.995)
COLOURS = {
    "candidate": "#2b6cb0",
    "baseline": "#718096",
    "band": "rgba(49, 130, 206, 0.12)",
    "green": "#2f855a",
    "amber": "#b7791f",
    "red": "#c53030",
    "incomparable": "#6b46c1",
    "": "#4a5568",
    "warn": "#b7791f",
    "block": "#c53030",
}
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#1a202c"}


@functools.lru_cache(maxsize=4096)
def escape_text(text: str) -> str:
    """Plotly reads labels, legend names and hover text as HTML-like markup: show < > & as themselves."""
    return str(text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _round(value: float | None) -> float | None:
    """Six significant digits: plenty for a chart, and a third of the bytes of a full float."""
    return None if value is None else float(f"{value:.6g}")


def _layout(title: str, x_title: str, y_title: str, **extra) -> dict:
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0, "xanchor": "left"},
        "font": FONT,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 320,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#ffffff",
        "xaxis": {"title": {"text": x_title}, "gridcolor": "#edf2f7", "zeroline": False},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#edf2f7", "zeroline": False},
        "legend": {"orientation": "h", "y": -0.25},
        "hoverlabel": {"font": {"family": FONT["family"]}},
        **extra,
    }


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def histogram_edges(*samples: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Shared bin edges for overlaid histograms, robust to a few extreme values."""
    values = np.concatenate([_finite(s) for s in samples])
    if len(values) == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    low, high = np.quantile(values, HISTOGRAM_QUANTILES)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def binned(values: np.ndarray, edges: np.ndarray) -> list[int]:
    clipped = np.clip(_finite(values), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts.tolist()


def _bar(name: str, counts: list[int], edges: np.ndarray, colour: str) -> dict:
    centres = (edges[:-1] + edges[1:]) / 2
    return {
        "type": "bar",
        "name": name,
        "x": centres.tolist(),
        "y": counts,
        "width": float(edges[1] - edges[0]),
        "marker": {"color": colour},
        "opacity": 0.55,
        "hovertemplate": f"{name}<br>%{{x:.4g}}: %{{y}} samples<extra></extra>",
    }


def distribution_figure(pairs: PairedSamples, names: tuple[str, str] = ("baseline", "candidate")) -> dict:
    """Candidate vs baseline per-sample values, binned on shared edges and overlaid; names: (baseline, candidate)."""
    edges = histogram_edges(pairs.candidate, pairs.baseline)
    label = escape_text(evals_selectors.metric_label(pairs.metric))
    baseline_name, candidate_name = (escape_text(name) for name in names)
    return {
        "data": [
            _bar(baseline_name, binned(pairs.baseline, edges), edges, COLOURS["baseline"]),
            _bar(candidate_name, binned(pairs.candidate, edges), edges, COLOURS["candidate"]),
        ],
        "layout": _layout(f"Per-sample {label}", label, "samples", barmode="overlay", bargap=0),
    }


def paired_delta_figure(pairs: PairedSamples) -> dict:
    """Histogram of per-sample changes (negative means worse), with the zero line marked."""
    deltas = pairs.deltas
    edges = histogram_edges(deltas)
    label = escape_text(evals_selectors.metric_label(pairs.metric))
    figure = {
        "data": [_bar("paired Δ", binned(deltas, edges), edges, COLOURS["candidate"])],
        "layout": _layout(
            f"Paired per-sample change in {label} (negative = worse)",
            f"Δ {label}",
            "samples",
            bargap=0,
            showlegend=False,
        ),
    }
    figure["layout"]["shapes"] = [_vertical_line(0.0, "#1a202c")]
    return figure


def _vertical_line(x: float, colour: str) -> dict:
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "yref": "paper",
        "y0": 0,
        "y1": 1,
        "line": {"color": colour, "width": 1, "dash": "dot"},
    }


def category_delta_figure(per_category: dict[str, dict], metric: str) -> dict:
    """Change per category (negative = worse), one horizontal bar each: in percent for a metric with relative
    deltas, in the metric's units for one with absolute deltas (as the verdict table words it)."""
    spec = METRICS.get(metric)
    absolute = spec is not None and spec.absolute
    names = sorted(per_category)
    raw = [per_category[name].get("delta") for name in names]
    deltas = (
        [_round(d) if d is not None and math.isfinite(d) else None for d in raw]
        if absolute
        else [_percent_points(d) for d in raw]
    )
    shown = [escape_text(name) for name in names]
    colours = [COLOURS["red"] if (d or 0) < 0 else COLOURS["green"] for d in deltas]
    counts = [per_category[name].get("n", "") for name in names]
    unit = "" if absolute else " %"
    layout = _layout(
        "Change by category (negative = worse)",
        f"change ({escape_text(evals_selectors.metric_label(metric))})" if absolute else "relative change (%)",
        "",
        showlegend=False,
        height=max(160, 60 + 28 * len(names)),
        shapes=[_vertical_line(0.0, "#1a202c")],
    )
    layout["yaxis"]["automargin"] = True  # the left margin grows to the longest category, never clipping it
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": shown,
                "x": deltas,
                "marker": {"color": colours},
                "customdata": counts,
                "hovertemplate": f"%{{y}}: %{{x:+.{3 if absolute else 2}f}}{unit} (n = %{{customdata}})<extra></extra>",
            }
        ],
        "layout": layout,
    }


def _percent_points(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else 100.0 * value


# Time series

SERIES_HOVER = (
    "<b>%{x}</b><br>commit %{customdata[1]}<br>branch %{customdata[2]} · PR %{customdata[3]}<br>"
    "flag %{customdata[4]}<br>value %{y:.4g} (95 % CI %{customdata[5]:.4g} – %{customdata[6]:.4g})<extra></extra>"
)
# Points shown as labelled ticks on a crowded time axis; the rest are still drawn and hoverable.
MAX_TICK_LABELS = 24
OUTCOME_WORDS = {"ungated": "not gated", "": "not compared"}
# name and marker symbol; every marker is coloured by its point's verdict, as the chart's caption says.
MARKER_STYLES = {
    "": ("scored", {"symbol": "circle", "size": 8}),
    "held": ("held", {"symbol": "diamond", "size": 10}),
    "promoted": ("promoted", {"symbol": "star", "size": 13}),
    "halted": ("halted", {"symbol": "x", "size": 11}),
}
# Metrics bounded by 0 and 1 (shares, 0/1 checks) are drawn on 0…1, not on plotly's −1…1 around a flat 0.
UNIT_INTERVAL = (0.0, 1.0)
UNIT_AXIS = [-0.02, 1.02]


def _hover_data(point: SeriesPoint) -> list:
    """[artifact id, commit, branch, PR, flag, CI low, CI high]; text escaped for plotly's pseudo-HTML."""
    artifact = point.artifact
    return [
        artifact.id,
        artifact.commit_sha[:12],
        escape_text(artifact.branch) or "—",
        escape_text(artifact.pull_request) or "—",
        OUTCOME_WORDS.get(point.outcome, point.outcome),
        _round(point.ci_low),
        _round(point.ci_high),
    ]


def _labels(series: Series) -> list[str]:
    return [escape_text(p.artifact.label) for p in series.points]


STEP_SHAPE = "hvh"  # each value is centred on its own point, the step half-way to the next


def _steps(labels: list[str], values: list[float | None]) -> tuple[list[str], list[float | None]]:
    """A mid-point step line needs only the ends and the points on either side of a change (the step is
    drawn half-way between those two, so each point sits on its own value)."""
    last = len(values) - 1
    kept = [i for i, value in enumerate(values) if i in (0, last) or value != values[i - 1] or value != values[i + 1]]
    return [labels[i] for i in kept], [values[i] for i in kept]


def _points_trace(series: Series, indices: list[int], marker_kind: str, labels: list[str]) -> dict:
    name, marker = MARKER_STYLES[marker_kind]
    points = [series.points[i] for i in indices]
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [labels[i] for i in indices],
        "y": [_round(p.value) for p in points],
        "error_y": {
            "type": "data",
            "symmetric": False,
            "color": "#a0aec0",
            "thickness": 1,
            "width": 0,
            "array": [_round(max(p.ci_high - p.value, 0.0)) for p in points],
            "arrayminus": [_round(max(p.value - p.ci_low, 0.0)) for p in points],
        },
        "marker": {
            **marker,
            "color": [COLOURS.get(p.outcome, COLOURS[""]) for p in points],
            "line": {"width": 1, "color": "#ffffff"},
        },
        "customdata": [_hover_data(p) for p in points],
        "hovertemplate": SERIES_HOVER,
    }


def _band_traces(series: Series, labels: list[str]) -> list[dict]:
    banded = [i for i, p in enumerate(series.points) if p.band_low is not None]
    if not banded:
        return []
    edges = [(series.points[i].band_low, series.points[i].band_high) for i in banded]
    x, kept = _steps([labels[i] for i in banded], edges)
    common = {
        "type": "scatter",
        "mode": "lines",
        "x": x,
        "line": {"width": 0, "shape": STEP_SHAPE},
        "hoverinfo": "skip",
    }
    return [
        {**common, "y": [_round(low) for low, _ in kept], "showlegend": False, "name": "band low"},
        {
            **common,
            "y": [_round(high) for _, high in kept],
            "fill": "tonexty",
            "fillcolor": COLOURS["band"],
            "name": f"{series.band_k:g}·σ band of production values",
        },
    ]


def _threshold_traces(series: Series, labels: list[str]) -> list[dict]:
    """One step line per threshold, following the version in force when each point was judged."""
    traces = []
    for step in series.thresholds:
        y = _threshold_values(series, step)
        if y is None or all(value is None for value in y):
            continue
        severity = next(s for s in reversed(step.severities) if s)
        x, kept = _steps(labels, list(zip(y, step.limits, strict=True)))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{severity} {_limit_word(series, step.rule)} (threshold {step.threshold_id})",
                "x": x,
                "y": [value for value, _ in kept],
                "connectgaps": False,
                "customdata": [evals_selectors.limit_text(series.metric, step.rule, limit) for _, limit in kept],
                "hovertemplate": "limit in force: %{customdata} → %{y:.4g}<extra></extra>",
                "line": {"color": COLOURS[severity], "dash": "dash", "width": 1.5, "shape": STEP_SHAPE},
            }
        )
    return traces


def _limit_word(series: Series, rule: str) -> str:
    if rule == "relative":
        return "limit"
    return "ceiling" if series.direction == "lower" else "floor"


def _threshold_values(series: Series, step) -> list[float | None] | None:
    """Relative: baseline·(1 ± limit) against the baseline each artifact was judged by (baseline ± limit
    for a metric with absolute deltas); absolute: the value."""
    if step.rule == "absolute":
        return [_round(limit) for limit in step.limits]
    if step.rule != "relative":
        return None  # a band rule is the shaded band
    sign = 1 if series.direction == "lower" else -1
    spec = METRICS.get(series.metric)
    absolute = spec is not None and spec.absolute
    return [
        _round(p.baseline_value + sign * limit if absolute else p.baseline_value * (1 + sign * limit))
        if p.baseline_value is not None and limit is not None
        else None
        for p, limit in zip(series.points, step.limits, strict=True)
    ]


def _tokenizer_trace(series: Series, labels: list[str]) -> list[dict]:
    changed = [i for i, p in enumerate(series.points) if p.tokenizer_changed]
    if not changed:
        return []
    return [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "tokenizer changed",
            "x": [labels[i] for i in changed],
            "y": [_round(series.points[i].value) for i in changed],
            "marker": {"symbol": "line-ns-open", "size": 26, "color": COLOURS["incomparable"], "line": {"width": 2}},
            "hovertemplate": "%{x}: tokenizer differs from the previous point's<extra></extra>",
        }
    ]


def _tick_labels(labels: list[str]) -> list[str]:
    """At most MAX_TICK_LABELS evenly spaced labels, the newest always among them."""
    if len(labels) <= MAX_TICK_LABELS:
        return labels
    step = math.ceil(len(labels) / MAX_TICK_LABELS)
    return labels[::-1][::step][::-1]


def series_figure(series: Series) -> dict:
    """Value per artifact, one category per artifact in commit order, with CI error bars, the k·σ band,
    the threshold in force as a step line, and markers for decisions and tokenizer changes."""
    label = evals_selectors.metric_label(series.metric)
    labels = _labels(series)
    traces = [*_band_traces(series, labels), *_threshold_traces(series, labels)]
    for marker_kind in MARKER_STYLES:
        indices = [i for i, p in enumerate(series.points) if p.marker == marker_kind]
        if indices:
            traces.append(_points_trace(series, indices, marker_kind, labels))
    traces += _tokenizer_trace(series, labels)
    better = "lower is better" if series.direction == "lower" else "higher is better"
    title = escape_text(f"{label} on {series.dataset_label} ({better})")
    layout = _layout(title, "artifact (version · commit), in commit order", label)
    layout["xaxis"].update(
        {
            "type": "category",
            "categoryorder": "array",
            "categoryarray": labels,
            "tickvals": _tick_labels(labels),
            "tickangle": -45,
            "automargin": True,
        }
    )
    spec = METRICS.get(series.metric)
    if spec is not None and spec.unit_range == UNIT_INTERVAL:
        layout["yaxis"]["range"] = UNIT_AXIS
    layout["hovermode"] = "closest"
    layout["legend"]["traceorder"] = "normal"
    layout["legend"]["y"] = -0.45
    layout["height"] = 380
    return {"data": traces, "layout": layout}


# Queues


def hourly_throughput_figure(hourly: list[tuple[datetime.datetime, int]]) -> dict:
    return {
        "data": [
            {
                "type": "bar",
                "x": [hour.isoformat() for hour, _ in hourly],
                "y": [n for _, n in hourly],
                "marker": {"color": COLOURS["candidate"]},
                "hovertemplate": "%{x}: %{y} runs<extra></extra>",
            }
        ],
        "layout": _layout("Runs finished per hour (last 24 h)", "hour (UTC)", "runs", showlegend=False, height=260),
    }


def storage_growth_figure(days: list[tuple[datetime.date, int, int]]) -> dict:
    x = [day.isoformat() for day, _, _ in days]
    layout = _layout("Stored metric data per day", "day", "MB of per-sample arrays", height=280)
    layout["margin"]["r"] = 70
    layout["yaxis"]["rangemode"] = "tozero"
    layout["yaxis2"] = {
        "title": {"text": "snapshots"},
        "overlaying": "y",
        "side": "right",
        "showgrid": False,
        "rangemode": "tozero",
    }
    return {
        "data": [
            {
                "type": "bar",
                "name": "MB stored",
                "x": x,
                "y": [(stored or 0) / 1e6 for _, _, stored in days],
                "marker": {"color": COLOURS["candidate"]},
                "hovertemplate": "%{x}: %{y:.3f} MB<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "snapshots",
                "x": x,
                "y": [rows for _, rows, _ in days],
                "yaxis": "y2",
                "marker": {"color": COLOURS["amber"]},
                "hovertemplate": "%{x}: %{y} snapshots<extra></extra>",
            },
        ],
        "layout": layout,
    }
