"""What an evaluation step decided should change in the registry, as a record: the services that decide
(verdicts, sampling, traffic) return it and `evals.services.pipeline` writes it through the registry
services, so the pipeline stays the one evaluation module that changes registry state."""

from dataclasses import dataclass, field

from registry.models import Artifact


@dataclass(frozen=True)
class AlertNotice:
    """An alert to raise on the artifact (see `registry.services.alert_raise`)."""

    severity: str
    title: str
    message: str
    payload: dict[str, object]
    cause: str = ""


@dataclass(frozen=True)
class RegistryChange:
    """Changes to one artifact, written in the order of the fields: its scoring status, its drift flag with
    the verdict's tags, other tags, the family's alerts resolved (by cause prefix), the promotion decision
    (`promote`, `hold` or `halt` with its reason; `promotion_action` names a promotion's event when it is not
    the default one), then the alerts."""

    artifact: Artifact
    status: str = ""
    flag: str = ""
    flag_tags: dict[str, object] = field(default_factory=dict)
    tags: dict[str, object] = field(default_factory=dict)
    resolve_alerts: str = ""
    decision: str = ""
    reason: str = ""
    promotion_action: str = ""
    alerts: tuple[AlertNotice, ...] = ()
