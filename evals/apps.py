from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        # The registry posts to pull requests; what it posts is written from evaluation data.
        from evals import comments
        from registry import publishing

        publishing.reporter_set(comments.artifact_report)
