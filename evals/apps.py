from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        # The registry posts to pull requests; what it posts is written from evaluation data.
        from driftboard import outbound
        from evals import checks, comments  # noqa: F401  (checks: registration)
        from evals.scoring.judges import remote
        from registry import publishing

        publishing.reporter_set(comments.artifact_report)
        # Judges built in this process connect where the settings allow, as they are at each call.
        remote.outbound_set(outbound.judge_policy)
