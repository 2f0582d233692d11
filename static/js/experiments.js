// The experiment page's chart: every run by status, crashes on the axis, the running best as a step line.
(function () {
  "use strict";

  var source = document.getElementById("experiment-chart-data");
  var target = document.getElementById("experiment-chart");
  if (!source || !target || typeof Plotly === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);

  // Colour is never the only cue: each status has its own marker shape and a legend name.
  var STATUS = {
    keep: { name: "keep", color: "#276749", symbol: "circle" },
    discard: { name: "discard", color: "#718096", symbol: "circle-open" },
    crash: { name: "crash (no value, on the axis)", color: "#9b2c2c", symbol: "x-thin-open" },
  };

  function escapeHtml(text) {
    return String(text || "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function hoverText(run) {
    var value = run.value === null ? "no value" : data.objective + " " + run.value.toFixed(6);
    var lines = ["#" + run.sequence + " " + escapeHtml(run.commit) + " · " + run.status.toUpperCase(), value];
    if (run.description) {
      lines.push(escapeHtml(run.description));
    }
    if (run.status === "crash" && run.crash_reason && run.crash_reason !== run.description) {
      lines.push(escapeHtml(run.crash_reason));
    }
    return lines.join("<br>");
  }

  function statusTrace(status) {
    var runs = data.runs.filter(function (run) {
      return run.status === status && (status === "crash" || run.value !== null);
    });
    var style = STATUS[status];
    var trace = {
      type: "scatter",
      mode: "markers",
      name: style.name,
      x: runs.map(function (run) { return run.sequence; }),
      y: runs.map(function (run) { return status === "crash" ? 0.02 : run.value; }),
      text: runs.map(hoverText),
      hovertemplate: "%{text}<extra></extra>",
      marker: { color: style.color, symbol: style.symbol, size: status === "crash" ? 12 : 9, line: { width: 2, color: style.color } },
    };
    if (status === "crash") {
      // A second, hidden axis fixed to [0, 1] pins crashes to the bottom whatever the value range.
      trace.yaxis = "y2";
      trace.cliponaxis = false;
    }
    return trace;
  }

  function frontierTrace() {
    var points = data.frontier;
    var x = points.map(function (p) { return p.sequence; });
    var y = points.map(function (p) { return p.value; });
    if (points.length && data.last_sequence > x[x.length - 1]) {
      x.push(data.last_sequence);
      y.push(y[y.length - 1]);
    }
    return {
      type: "scatter",
      mode: "lines",
      name: "running best (kept runs)",
      x: x,
      y: y,
      line: { shape: "hv", color: "#2b6cb0", width: 2 },
      hovertemplate: "best so far %{y:.6f}<extra></extra>",
    };
  }

  var traces = [frontierTrace(), statusTrace("keep"), statusTrace("discard"), statusTrace("crash")];
  var better = data.direction === "higher" ? "higher is better" : "lower is better";
  var layout = {
    height: 380,
    margin: { l: 70, r: 20, t: 40, b: 50 },
    xaxis: { title: { text: "run" }, zeroline: false },
    yaxis: { title: { text: data.objective + " (" + better + ")" }, zeroline: false },
    yaxis2: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
    hovermode: "closest",
  };
  Plotly.newPlot(target, traces, layout, { responsive: true, displaylogo: false });
})();
