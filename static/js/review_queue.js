// The review queue's keyboard: each labelling key presses its button (the label is stored and the
// next item loads); n writes a note, j/k move, ? shows the keys. Typing in a field is left alone.
(function () {
  const item = document.getElementById("review-item");
  if (!item) return;
  const help = document.getElementById("review-help");
  const note = document.getElementById("review-note");
  const byKey = {};
  item.querySelectorAll("[data-key]").forEach((element) => { byKey[element.dataset.key] = element; });
  document.getElementById("review-help-toggle").addEventListener("click", () => { help.hidden = !help.hidden; });

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") {
      help.hidden = !help.hidden;
    } else if (event.key === "n") {
      note.focus();
    } else if (byKey[event.key]) {
      byKey[event.key].click();
    } else {
      return;
    }
    event.preventDefault();
  });
})();
