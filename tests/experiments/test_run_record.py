"""Runs posted by a live loop: the train.py summary block, the crash reason, and what the log fills in."""

import datetime

import pytest

from evals.services.experiments import (
    ExperimentRunError,
    experiment_run_record,
    train_log_crash_reason,
    train_log_summary,
)


def test_it_reads_the_summary_block_of_a_train_log(train_log):
    assert train_log_summary(train_log) == {
        "val_bpb": 0.9818,
        "training_seconds": 300.1,
        "total_seconds": 326.4,
        "peak_vram_mb": 52531.2,
        "mfu_percent": 39.8,
        "total_tokens_M": 499.6,
        "num_steps": 953,
        "num_params_M": 68.9,
        "depth": 9,
    }


def test_it_finds_no_summary_in_a_crashed_log(crash_log):
    assert train_log_summary(crash_log) == {}


def test_it_takes_the_last_error_line_as_the_crash_reason(crash_log):
    # The log ends with a warning printed at exit; the reason is the exception line before it.
    assert train_log_crash_reason(crash_log).startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        ("step 00010 (1.0%) | loss: nan\nFAIL\n", "FAIL"),
        ('Traceback (most recent call last):\n  File "train.py", line 3\nKeyboardInterrupt\n', "KeyboardInterrupt"),
        ("loading\nERROR: dataset shard 3 missing\nbye\n", "ERROR: dataset shard 3 missing"),
        ("Killed\n", "Killed"),
        ("", ""),
    ],
)
def test_it_reads_crash_reasons_of_other_shapes(log, reason):
    assert train_log_crash_reason(log) == reason


def test_it_fills_the_objective_memory_and_duration_from_the_log(experiment, train_log):
    run = experiment_run_record(experiment=experiment, commit="cf2a3b4", status="keep", log=train_log)
    run.refresh_from_db()
    assert (run.sequence, run.objective_value, run.memory_gb, run.duration_s) == (1, 0.9818, 51.3, 326.4)
    assert run.summary["num_steps"] == 953
    assert run.log_excerpt.endswith("depth:            9")


def test_it_prefers_the_values_it_was_given(experiment, train_log):
    start = datetime.datetime(2025, 3, 5, 2, 0, tzinfo=datetime.UTC)
    run = experiment_run_record(
        experiment=experiment,
        commit="cf2a3b4",
        status="keep",
        objective_value=0.95,
        memory_gb=50.0,
        log=train_log,
        started_at=start,
        finished_at=start + datetime.timedelta(seconds=331),
    )
    assert (run.objective_value, run.memory_gb, run.duration_s) == (0.95, 50.0, 331.0)


def test_it_records_a_crash_with_the_reason_from_its_log(experiment, crash_log):
    run = experiment_run_record(
        experiment=experiment,
        commit="d4e5f60",
        status="crash",
        objective_value=0.0,
        memory_gb=0.0,
        description="double model width",
        log=crash_log,
    )
    run.refresh_from_db()
    assert run.objective_value is None and run.memory_gb is None
    assert run.crash_reason.startswith("torch.OutOfMemoryError")
    assert run.log_excerpt == crash_log.rstrip("\n")


def test_it_keeps_the_last_fifty_lines_of_a_long_log(experiment):
    log = "".join(f"line {i}\n" for i in range(1, 201)) + "RuntimeError: boom\n"
    run = experiment_run_record(experiment=experiment, commit="abc1234", status="crash", log=log)
    assert run.log_excerpt.splitlines() == [f"line {i}" for i in range(152, 201)] + ["RuntimeError: boom"]
    assert run.crash_reason == "RuntimeError: boom"


def test_it_falls_back_to_the_description_for_a_crash_without_log(experiment):
    run = experiment_run_record(experiment=experiment, commit="d4e5f60", status="crash", description="OOM at depth 12")
    assert run.crash_reason == "OOM at depth 12"


def test_it_refuses_a_kept_run_without_a_value(experiment):
    with pytest.raises(ExperimentRunError, match="val_bpb"):
        experiment_run_record(experiment=experiment, commit="abc1234", status="keep", log="no summary here\n")
    assert not experiment.runs.exists()


def test_it_numbers_runs_in_the_order_they_arrive(experiment):
    runs = [
        experiment_run_record(experiment=experiment, commit=f"{i:07x}", status="discard", objective_value=1.0 + i)
        for i in range(3)
    ]
    assert [r.sequence for r in runs] == [1, 2, 3]
