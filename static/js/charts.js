// Draws every [data-figure] element from the JSON that the page embedded with json_script.
// A chart marked data-click-opens="customdata" opens the URL held in the first customdata field
// of a clicked point (time series: one point per artifact).
(function () {
  "use strict";

  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function pointUrl(point) {
    var data = point.customdata;
    return Array.isArray(data) ? data[0] : data;
  }

  function openClickedPoint(event) {
    var url = event.points && event.points.length ? pointUrl(event.points[0]) : null;
    if (typeof url === "string" && url.charAt(0) === "/") {
      window.location.assign(url);
    }
  }

  function draw(element) {
    var source = document.getElementById(element.dataset.figure);
    if (!source) {
      return;
    }
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(element, figure.data, figure.layout, CONFIG).then(function () {
      if (element.dataset.clickOpens === "customdata") {
        element.on("plotly_click", openClickedPoint);
      }
      element.dataset.rendered = "true";
    });
  }

  document.querySelectorAll("[data-figure]").forEach(draw);
})();
