"""The family page's cost charts: what each verdict cost, and each week."""

from driftboard.dashboard.charts import COLOURS, _layout, _round, escape_text
from evals.costs import FamilyCosts


def _cost_bars(
    title: str, x_title: str, unit: str, x: list[str], y: list[float], text: list[str] | None = None
) -> dict:
    trace = {
        "type": "bar",
        "x": x,
        "y": [_round(value) for value in y],
        "marker": {"color": COLOURS["candidate"]},
        "hovertemplate": f"%{{x}}: %{{y}} {escape_text(unit)}<extra></extra>",
    }
    if text is not None:
        trace |= {"text": text, "hovertemplate": f"%{{x}}: %{{y}} {escape_text(unit)} · %{{text}}<extra></extra>"}
    layout = _layout(title, x_title, unit, showlegend=False, height=260)
    layout["xaxis"]["type"] = "category"
    layout["yaxis"]["rangemode"] = "tozero"
    return {"data": [trace], "layout": layout}


def cost_per_version_figure(costs: FamilyCosts) -> dict:
    return _cost_bars(
        "Cost per verdict",
        "version",
        costs.unit,
        [f"v{version}" for version, _, _ in costs.per_version],
        [spent for _, spent, _ in costs.per_version],
        [f"saved {100 * saved:.0f} %" for _, _, saved in costs.per_version],
    )


def cost_per_week_figure(costs: FamilyCosts) -> dict:
    return _cost_bars(
        "Cost per week",
        "week (from Monday)",
        costs.unit,
        [week.isoformat() for week, _ in costs.per_week],
        [spent for _, spent in costs.per_week],
    )
