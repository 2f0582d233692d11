"""Plotly figures as plain JSON-able dicts, built from selector output.

Per-sample arrays never reach the browser as such: distributions are binned here and series carry one
point per artifact. The page hands each figure to static/js/charts.js through json_script.
"""

import datetime
import math

import numpy as np

from driftboard.dashboard_selectors import PairedSamples, Series, SeriesPoint

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


def distribution_figure(pairs: PairedSamples) -> dict:
    """Candidate vs baseline per-sample values, binned on shared edges and overlaid."""
    edges = histogram_edges(pairs.candidate, pairs.baseline)
    label = pairs.metric.replace("_", " ")
    return {
        "data": [
            _bar("baseline", binned(pairs.baseline, edges), edges, COLOURS["baseline"]),
            _bar("candidate", binned(pairs.candidate, edges), edges, COLOURS["candidate"]),
        ],
        "layout": _layout(f"Per-sample {label}", label, "samples", barmode="overlay", bargap=0),
    }


def paired_delta_figure(pairs: PairedSamples) -> dict:
    """Histogram of per-sample changes (negative means worse), with the zero line marked."""
    deltas = pairs.deltas
    edges = histogram_edges(deltas)
    label = pairs.metric.replace("_", " ")
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


def category_delta_figure(per_category: dict[str, dict]) -> dict:
    """Relative change per category (negative = worse), one horizontal bar each."""
    names = sorted(per_category)
    deltas = [_percent(per_category[name].get("delta")) for name in names]
    colours = [COLOURS["red"] if (d or 0) < 0 else COLOURS["green"] for d in deltas]
    counts = [per_category[name].get("n", "") for name in names]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": names,
                "x": deltas,
                "marker": {"color": colours},
                "customdata": counts,
                "hovertemplate": "%{y}: %{x:+.2f} % (n = %{customdata})<extra></extra>",
            }
        ],
        "layout": _layout(
            "Change by category (negative = worse)",
            "relative change (%)",
            "",
            showlegend=False,
            height=max(160, 60 + 28 * len(names)),
            shapes=[_vertical_line(0.0, "#1a202c")],
        ),
    }


def _percent(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else 100.0 * value


# Time series


def _hover_data(point: SeriesPoint) -> list:
    artifact = point.artifact
    return [
        artifact.get_absolute_url(),
        artifact.short_sha,
        artifact.branch or "—",
        f"v{artifact.version}",
        point.outcome or "not compared",
        point.marker or "—",
    ]


SERIES_HOVER = (
    "<b>%{customdata[3]}</b> · %{customdata[1]} on %{customdata[2]}<br>"
    "value %{y:.4g}<br>flag %{customdata[4]} · %{customdata[5]}<extra></extra>"
)
# name, marker style, and a fixed colour (None: coloured by each point's verdict outcome).
MARKER_STYLES = {
    "": ("scored", {"symbol": "circle", "size": 8}, None),
    "promoted": ("promoted", {"symbol": "star", "size": 13}, COLOURS["candidate"]),
    "halted": ("halted", {"symbol": "x", "size": 11}, COLOURS["red"]),
}


def _points_trace(points: list[SeriesPoint], marker_kind: str) -> dict:
    name, marker, colour = MARKER_STYLES[marker_kind]
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [p.artifact.version for p in points],
        "y": [_round(p.value) for p in points],
        "error_y": {
            "type": "data",
            "symmetric": False,
            "color": "#a0aec0",
            "thickness": 1,
            "array": [_round(max(p.ci_high - p.value, 0.0)) for p in points],
            "arrayminus": [_round(max(p.value - p.ci_low, 0.0)) for p in points],
        },
        "marker": {
            **marker,
            "color": colour or [COLOURS.get(p.outcome, COLOURS[""]) for p in points],
            "line": {"width": 1, "color": "#ffffff"},
        },
        "customdata": [_hover_data(p) for p in points],
        "hovertemplate": SERIES_HOVER,
    }


def _band_traces(series: Series) -> list[dict]:
    banded = [p for p in series.points if p.band_low is not None]
    if not banded:
        return []
    x = [p.artifact.version for p in banded]
    common = {"type": "scatter", "mode": "lines", "x": x, "line": {"width": 0, "shape": "hv"}, "hoverinfo": "skip"}
    return [
        {**common, "y": [_round(p.band_low) for p in banded], "showlegend": False, "name": "band low"},
        {
            **common,
            "y": [_round(p.band_high) for p in banded],
            "fill": "tonexty",
            "fillcolor": COLOURS["band"],
            "name": f"{series.band_k:g}·σ band of production values",
        },
    ]


def _threshold_traces(series: Series) -> list[dict]:
    traces = []
    for threshold in series.thresholds:
        y = _threshold_values(series, threshold.rule, threshold.limit)
        if y is None:
            continue
        label = (
            f"{threshold.severity} limit {100 * threshold.limit:g} %"
            if threshold.rule == "relative"
            else (f"{threshold.severity} {('ceiling' if series.direction == 'lower' else 'floor')} {threshold.limit:g}")
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label,
                "x": [p.artifact.version for p in series.points],
                "y": y,
                "connectgaps": False,
                "hoverinfo": "skip",
                "line": {"color": COLOURS[threshold.severity], "dash": "dash", "width": 1.5, "shape": "hv"},
            }
        )
    return traces


def _threshold_values(series: Series, rule: str, limit: float) -> list[float | None] | None:
    """Relative: baseline·(1 ± limit) against the baseline each artifact was judged by; absolute: the value."""
    if rule == "absolute":
        return [limit for _ in series.points]
    if rule != "relative":
        return None
    factor = 1 + limit if series.direction == "lower" else 1 - limit
    return [_round(p.baseline_value * factor) if p.baseline_value is not None else None for p in series.points]


def series_figure(series: Series) -> dict:
    """Value per artifact in creation order with CI error bars, band, threshold lines and decision markers."""
    label = series.metric.replace("_", " ")
    traces = [*_band_traces(series), *_threshold_traces(series)]
    for marker_kind in MARKER_STYLES:
        points = [p for p in series.points if p.marker == marker_kind]
        if points:
            traces.append(_points_trace(points, marker_kind))
    better = "lower is better" if series.direction == "lower" else "higher is better"
    layout = _layout(f"{label} on {series.dataset_label} ({better})", "artifact version (creation order)", label)
    layout["xaxis"]["tickformat"] = "d"
    layout["hovermode"] = "closest"
    layout["legend"]["traceorder"] = "normal"
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
