"""Evaluation writes: datasets, runs, snapshots, verdicts, thresholds, experiments.

`pipeline` is where they meet the registry (submission, run processing, judging), and the one that
changes registry state.
"""

from evals.services.datasets import dataset_import, dataset_import_task, dataset_import_task_upload
from evals.services.pipeline import (
    artifact_evaluate,
    artifact_runs_create,
    eval_run_claim,
    eval_run_execute,
    eval_run_fail,
)
from evals.services.runs import eval_runs_create_for_artifact, eval_runs_dispatch, eval_runs_sweep
from evals.services.thresholds import threshold_backtest, threshold_save, thresholds_create_defaults

__all__ = [
    "artifact_evaluate",
    "artifact_runs_create",
    "dataset_import",
    "dataset_import_task",
    "dataset_import_task_upload",
    "eval_run_claim",
    "eval_run_execute",
    "eval_run_fail",
    "eval_runs_create_for_artifact",
    "eval_runs_dispatch",
    "eval_runs_sweep",
    "threshold_backtest",
    "threshold_save",
    "thresholds_create_defaults",
]
