"""What registering weights gives back, or why it was refused: read by the apps that submit weights."""

from dataclasses import dataclass

from registry.models import Artifact


class RegistrationError(ValueError):
    """The submission was refused; nothing was stored. The message says why, `status_code` how to answer."""

    def __init__(self, message: str, *, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Registration:
    artifact: Artifact
    created: bool
