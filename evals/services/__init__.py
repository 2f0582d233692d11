"""Evaluation writes: datasets, runs, snapshots, verdicts, thresholds, experiments.

`pipeline` is where they meet the registry (submission, run processing, judging).
"""

from evals.services.datasets import dataset_import, dataset_import_task, dataset_import_task_upload
from evals.services.runs import (
    eval_run_claim,
    eval_run_execute,
    eval_run_fail,
    eval_runs_create_for_artifact,
    eval_runs_dispatch,
    eval_runs_sweep,
)
from evals.services.thresholds import threshold_backtest, threshold_save, thresholds_create_defaults
from evals.services.verdicts import artifact_evaluate

__all__ = [
    "artifact_evaluate",
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
