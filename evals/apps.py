from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        from driftboard import outbound
        from evals import checks  # noqa: F401  (registration)
        from evals.scoring.judges import remote

        # Judges built in this process connect where the settings allow, as they are at each call.
        remote.outbound_set(outbound.judge_policy)
