"""System checks of the evaluation app: scorer plug-ins that could not be loaded are reported by
name when any process starts (web, workers, CLI), instead of failing deep in a run."""

from django.core.checks import Error, register

from evals.scoring.scorers import PLUGIN_ERRORS
from evals.scoring.scorers.plugins import GROUP


@register()
def scorer_plugins_check(app_configs, **kwargs) -> list[Error]:
    return [
        Error(
            f"The scorer plug-in {name!r} (entry point group {GROUP}) could not be loaded: {problem}",
            hint="Fix or uninstall the package that provides it; the other scorers work without it.",
            id="evals.E001",
        )
        for name, problem in sorted(PLUGIN_ERRORS.items())
    ]
