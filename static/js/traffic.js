// The traffic tab: each window's mean with its interval against the reference band, the KS /
// Wasserstein / PSI series, and the category mix as a stacked chart. Category names and labels are
// user text: they are escaped before plotly renders them (plotly treats names and hover text as HTML).
(function () {
  "use strict";

  var source = document.getElementById("traffic-chart-data");
  if (!source || typeof Plotly === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  // Colour is never the only cue: each outcome has its own marker shape and legend name.
  var OUTCOME = {
    green: { color: "#276749", symbol: "circle" },
    amber: { color: "#b7791f", symbol: "diamond" },
    red: { color: "#9b2c2c", symbol: "x" },
    incomparable: { color: "#6b46c1", symbol: "square-open" },
    pending: { color: "#718096", symbol: "circle-open" },
  };

  function escapeHtml(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  var windows = data.windows;
  var scored = windows.filter(function (w) { return w.mean !== null && w.mean !== undefined; });
  var labels = windows.map(function (w) { return escapeHtml(w.label); });
  // automargin: the last window's tick label is drawn whole ("…00:00", not "…00:0") at the right edge.
  var axis = { title: { text: "window" }, type: "category", automargin: true };

  function hover(w) {
    return [
      escapeHtml(w.label) + " · " + escapeHtml(w.outcome).toUpperCase() + " · n = " + w.n,
      "mean " + fixed(w.mean, 4) + " (" + fixed(w.mean_ci_low, 4) + " to " + fixed(w.mean_ci_high, 4) + ")",
      "reference " + fixed(w.reference_mean, 4) + ", shift " + fixed(w.shift_sigma, 2) + " σ",
    ].join("<br>");
  }

  function outcomeTrace(outcome) {
    var points = scored.filter(function (w) { return w.outcome === outcome; });
    var style = OUTCOME[outcome] || OUTCOME.pending;
    return {
      type: "scatter",
      mode: "markers",
      name: outcome,
      x: points.map(function (w) { return escapeHtml(w.label); }),
      y: points.map(function (w) { return w.mean; }),
      error_y: {
        type: "data",
        symmetric: false,
        array: points.map(function (w) { return w.mean_ci_high - w.mean; }),
        arrayminus: points.map(function (w) { return w.mean - w.mean_ci_low; }),
        color: style.color,
      },
      customdata: points.map(function (w) { return "?window=" + w.window + "#window-detail"; }),
      text: points.map(hover),
      hovertemplate: "%{text}<extra></extra>",
      marker: { color: style.color, symbol: style.symbol, size: 10, line: { width: 2, color: style.color } },
    };
  }

  function bandTraces() {
    var x = scored.map(function (w) { return escapeHtml(w.label); });
    return [
      { type: "scatter", mode: "lines", x: x, y: scored.map(function (w) { return w.band_low; }), line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      {
        type: "scatter", mode: "lines", name: "reference band", x: x, y: scored.map(function (w) { return w.band_high; }),
        fill: "tonexty", fillcolor: "rgba(43,108,176,0.12)", line: { width: 0 }, hoverinfo: "skip",
      },
      {
        type: "scatter", mode: "lines", name: "reference mean", x: x, y: scored.map(function (w) { return w.reference_mean; }),
        line: { dash: "dash", color: "#2b6cb0" }, hoverinfo: "skip",
      },
    ];
  }

  function draw(id, traces, layout, clickable) {
    var element = document.getElementById(id);
    if (!element) {
      return;
    }
    Plotly.newPlot(element, traces, Object.assign({ height: 340, margin: { l: 60, r: 40, t: 20, b: 70 }, legend: { orientation: "h", y: -0.3 } }, layout), CONFIG).then(function () {
      if (clickable) {
        element.on("plotly_click", function (event) {
          var target = event.points && event.points.length ? event.points[0].customdata : null;
          if (typeof target === "string" && target.charAt(0) === "?") {
            window.location.assign(target);
          }
        });
      }
      element.dataset.rendered = "true";
    });
  }

  var outcomes = Object.keys(OUTCOME).filter(function (o) { return scored.some(function (w) { return w.outcome === o; }); });
  draw("traffic-mean-chart", bandTraces().concat(outcomes.map(outcomeTrace)), {
    xaxis: axis, yaxis: { title: { text: "mean per-sample " + escapeHtml(data.metric_label) } }, hovermode: "closest",
  }, true);

  function seriesTrace(key, name, dash) {
    return {
      type: "scatter", mode: "lines+markers", name: name, line: { dash: dash },
      x: scored.map(function (w) { return escapeHtml(w.label); }),
      y: scored.map(function (w) { return w[key]; }),
      hovertemplate: name + " %{y:.3f}<extra></extra>",
    };
  }
  draw("traffic-shift-chart", [
    seriesTrace("ks", "KS statistic", "solid"),
    seriesTrace("wasserstein_sigma", "Wasserstein / σ", "dot"),
    seriesTrace("psi", "PSI (category mix)", "dash"),
  ], { xaxis: axis, yaxis: { title: { text: "statistic" }, rangemode: "tozero" } }, false);

  var categories = [];
  windows.forEach(function (w) {
    Object.keys(w.mix).forEach(function (c) { if (categories.indexOf(c) < 0) { categories.push(c); } });
  });
  categories.sort();
  draw("traffic-mix-chart", categories.map(function (c) {
    var name = escapeHtml(c);
    return {
      type: "bar", name: name, x: labels,
      y: windows.map(function (w) { return 100 * (w.mix[c] || 0); }),
      hovertemplate: name + " %{y:.1f} %<extra></extra>",
    };
  }), { barmode: "stack", xaxis: axis, yaxis: { title: { text: "share of the window (%)" }, range: [0, 100] } }, false);
})();
