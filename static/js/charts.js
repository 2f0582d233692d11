// Draws every [data-figure] element from the JSON that the page embedded with json_script.
// A time series (data-point-url, "{id}" standing for the artifact id in customdata[0]) opens the
// clicked point's artifact; with data-compare-url, shift-clicking two points compares them.
(function () {
  "use strict";

  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function artifactId(point) {
    var data = point.customdata;
    var id = Array.isArray(data) ? data[0] : data;
    return typeof id === "number" && isFinite(id) ? id : null;
  }

  function compareNote(element, text) {
    var note = element.parentElement.querySelector("[data-compare-note]");
    if (note) {
      note.textContent = text;
    }
  }

  function onClick(element, event) {
    var point = event.points && event.points.length ? event.points[0] : null;
    var id = point ? artifactId(point) : null;
    if (id === null) {
      return;
    }
    var compareUrl = element.dataset.compareUrl;
    if (compareUrl && event.event && event.event.shiftKey) {
      var first = element.dataset.compareFirst;
      if (!first || first === String(id)) {
        element.dataset.compareFirst = String(id);
        compareNote(element, point.x.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&") + " picked: shift-click a second point to compare.");
        return;
      }
      var separator = compareUrl.indexOf("?") === -1 ? "?" : "&";
      window.location.assign(compareUrl + separator + "a=" + encodeURIComponent(first) + "&b=" + id);
      return;
    }
    window.location.assign(element.dataset.pointUrl.replace("{id}", String(id)));
  }

  function draw(element) {
    var source = document.getElementById(element.dataset.figure);
    if (!source) {
      return;
    }
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(element, figure.data, figure.layout, CONFIG).then(function () {
      if (element.dataset.pointUrl) {
        element.on("plotly_click", function (event) { onClick(element, event); });
      }
      element.dataset.rendered = "true";
    });
  }

  document.querySelectorAll("[data-figure]").forEach(draw);
})();
