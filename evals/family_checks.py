"""Checks of a family's judge and generation settings that depend on this server (the API's part):
where a judge URL may point, and which folders a local judge or an embedder may be loaded from.

A folder must lie under DRIFTBOARD_MODEL_ROOTS (else DRIFTBOARD_IMPORT_ROOTS); a refusal names the
setting, never the folder it resolved to. The scoring package checks the rest (types, bounds).
"""

from pathlib import Path

from django.conf import settings

from driftboard.outbound import url_problem

# The settings of a family that name a server-side folder to load a model from, by section.
MODEL_FOLDERS = {"judge": ("local",), "generation": ("embedder",)}


def model_roots() -> list[Path]:
    return settings.DRIFTBOARD_MODEL_ROOTS or settings.DRIFTBOARD_IMPORT_ROOTS


def under_model_roots(raw: str) -> bool:
    try:
        path = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte, a name too long
        return False
    return any(path.is_relative_to(root) for root in model_roots())


def family_settings_problem(section: str, values: dict) -> str | None:
    """Why the family's `judge` or `generation` settings cannot be used on this server, or None."""
    url = values.get("url") if section == "judge" else None
    if isinstance(url, str) and (problem := url_problem(url)):
        return f"judge setting `url` {problem}"
    for name in MODEL_FOLDERS[section]:
        folder = values.get(name)
        if isinstance(folder, str) and folder.strip() and not under_model_roots(folder):
            return (
                f"{section} setting `{name}` must be a folder under DRIFTBOARD_MODEL_ROOTS "
                "(or DRIFTBOARD_IMPORT_ROOTS when that is empty)"
            )
    return None
