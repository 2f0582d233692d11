// Live progress of an artifact's evaluation runs: polls the page's JSON endpoint while runs are
// unfinished and updates the run table in place; once everything finished, offers a reload.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var section = document.querySelector("[data-progress-url][data-live]");
  if (!section) {
    return;
  }

  function setText(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell) {
      cell.textContent = text;
    }
  }

  function updateRun(run) {
    var row = section.querySelector('tr[data-run-id="' + run.id + '"]');
    if (!row) {
      return false;
    }
    var badge = row.querySelector('[data-field="status"]');
    badge.textContent = run.status_label;
    badge.className = "badge badge-status status-" + run.status;
    setText(row, "tokens_per_second", run.tokens_per_second ? Math.round(run.tokens_per_second).toLocaleString() : "—");
    var bar = row.querySelector('[role="progressbar"]');
    bar.setAttribute("aria-valuenow", run.samples_done);
    bar.setAttribute("aria-valuemax", run.samples_total);
    row.querySelector(".progress-fill").style.width = run.percent + "%";
    row.querySelector(".progress-text").textContent =
      run.samples_done.toLocaleString() + " / " + run.samples_total.toLocaleString();
    var errorRow = section.querySelector('tr[data-run-error="' + run.id + '"]');
    if (errorRow) {
      errorRow.hidden = !run.error;
      errorRow.querySelector(".run-error").textContent = run.error;
    }
    return true;
  }

  // The header's flag and stage badges follow the artifact too (a promotion lands while the page is open).
  function updateHeader(payload) {
    document.querySelectorAll("[data-artifact-flag] .badge").forEach(function (badge) {
      badge.className = "badge flag-" + (payload.drift_flag || "none");
      badge.textContent = payload.drift_flag_label;
    });
    var stage = document.getElementById("artifact-stage");
    if (stage) {
      stage.className = "badge badge-stage" + (payload.stage === "production" ? " badge-production" : "");
      stage.textContent = payload.stage_label;
    }
  }

  function offerReload(message) {
    var note = document.getElementById("runs-live-note");
    note.textContent = message + " ";
    var link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "Reload to see the verdicts";
    note.appendChild(link);
  }

  function poll() {
    fetch(section.dataset.progressUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("progress request failed: " + response.status);
        }
        return response.json();
      })
      .then(function (payload) {
        var known = payload.runs.map(updateRun).every(Boolean);
        document.getElementById("artifact-status").textContent = payload.status;
        updateHeader(payload);
        if (payload.finished || !known) {
          offerReload(payload.finished ? "Scoring finished." : "New runs were queued.");
        } else {
          window.setTimeout(poll, POLL_MS);
        }
      })
      .catch(function () {
        window.setTimeout(poll, POLL_MS * 5);
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
