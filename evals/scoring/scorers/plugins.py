"""Scorers shipped as packages: the entry-point group `driftboard.scorers`, each entry `name =
"module:object"` where the object is a scorer class, a scorer instance or a function decorated with
`answer_scorer`. Loaded once, in web, workers and CLI alike (importing `evals.scoring.scorers`);
a plug-in that fails to import, is not a scorer or clashes with a registered name is recorded in
`PLUGIN_ERRORS` by entry-point name (reported by the `evals` system check), never raised.
"""

import importlib.metadata

from evals.scoring.scorers.base import SCORERS, Scorer, register_scorer

GROUP = "driftboard.scorers"
PLUGIN_ERRORS: dict[str, str] = {}
PLUGINS: dict[str, str] = {}


def load_plugins() -> None:
    for entry in importlib.metadata.entry_points(group=GROUP):
        try:
            scorer = _scorer_of(entry.load())
            if scorer.name not in SCORERS or SCORERS[scorer.name] is not scorer:
                register_scorer(scorer)
            PLUGINS[entry.name] = scorer.name
        except Exception as exc:  # any error of a third-party package is reported, never fatal
            PLUGIN_ERRORS[entry.name] = f"{entry.value}: {type(exc).__name__}: {exc}"


def _scorer_of(loaded: object) -> Scorer:
    """The scorer an entry point names (a decorated function carries its registered scorer)."""
    candidate = getattr(loaded, "scorer", loaded)
    if isinstance(candidate, type) and issubclass(candidate, Scorer):
        registered = SCORERS.get(getattr(candidate, "name", ""))
        return registered if type(registered) is candidate else candidate()
    if isinstance(candidate, Scorer):
        return candidate
    raise TypeError(f"{loaded!r} is not a scorer (a Scorer class or instance, or an @answer_scorer function)")
