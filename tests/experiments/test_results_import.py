"""Import of an autoresearch results.tsv: rows, malformed lines, crash rows, idempotency and growth."""

import pytest

from evals.models import ExperimentRun
from evals.services.experiments import ResultsFileError, experiment_run_record, results_import, results_parse

HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
# Read off data/results.tsv by hand: 40 lines, a header, one blank line and four broken lines.
MALFORMED_LINES = [13, 18, 22, 33]
VALID_ROWS = 34


def test_it_reports_malformed_lines_with_their_numbers(results_bytes):
    parsed = results_parse(results_bytes.decode())
    assert [m.line for m in parsed.malformed] == MALFORMED_LINES
    messages = {m.line: m.message for m in parsed.malformed}
    assert "expected 5 tab-separated columns, found 1" in messages[13]
    assert "'kept'" in messages[18]
    assert "not a finite number" in messages[22]
    assert "found 2" in messages[33]
    assert len(parsed.rows) == VALID_ROWS


def test_it_keeps_valid_rows_in_file_order(experiment, results_bytes):
    report = results_import(experiment=experiment, data=results_bytes)
    assert len(report.created) == VALID_ROWS
    runs = list(experiment.runs.order_by("sequence"))
    assert [r.sequence for r in runs] == list(range(1, VALID_ROWS + 1))
    assert (runs[0].commit, runs[0].objective_value, runs[0].memory_gb, runs[0].status) == (
        "a1b2c3d",
        0.9979,
        44.0,
        "keep",
    )
    assert (runs[-1].commit, runs[-1].objective_value, runs[-1].description) == (
        "cf2a3b4",
        0.9818,
        "final LR fraction 0.0 -> 0.02",
    )
    assert runs[11].description == "remove logit softcap (same bpb, simpler)"  # line 14, after a broken line


def test_it_stores_crash_rows_without_a_value_and_with_their_reason(imported):
    crashes = list(imported.runs.filter(status=ExperimentRun.Status.CRASH).order_by("sequence"))
    assert [c.sequence for c in crashes] == [4, 9, 15, 19, 25, 31]
    assert all(c.objective_value is None and c.memory_gb is None for c in crashes)
    assert crashes[0].crash_reason == "double model width (OOM)"
    assert all(c.crash_reason == c.description for c in crashes)
    non_crash = imported.runs.exclude(status=ExperimentRun.Status.CRASH)
    assert not non_crash.exclude(crash_reason="").exists()


def test_it_adds_nothing_when_the_same_file_comes_twice(imported, results_bytes):
    before = list(imported.runs.values_list("pk", "sequence", "row_hash"))
    report = results_import(experiment=imported, data=results_bytes)
    assert report.created == []
    assert report.unchanged == VALID_ROWS
    assert list(imported.runs.values_list("pk", "sequence", "row_hash")) == before


def test_it_adds_only_the_new_rows_of_a_grown_file(experiment, results_bytes):
    lines = results_bytes.decode().splitlines(keepends=True)
    # The first 20 lines end between two identical rows (lines 20 and 21): 17 valid rows so far.
    first = results_import(experiment=experiment, data="".join(lines[:20]))
    assert len(first.created) == 17
    grown = results_import(experiment=experiment, data=results_bytes)
    assert len(grown.created) == VALID_ROWS - 17
    assert grown.unchanged == 17
    assert [r.sequence for r in grown.created] == list(range(18, VALID_ROWS + 1))
    reruns = experiment.runs.filter(commit="a0b1c2d", status="discard").order_by("sequence")
    assert [r.sequence for r in reruns] == [17, 18]
    assert experiment.runs.count() == VALID_ROWS


def test_it_numbers_imported_rows_after_runs_posted_live(experiment):
    experiment_run_record(experiment=experiment, commit="aaaaaaa", status="keep", objective_value=1.0)
    report = results_import(experiment=experiment, data=HEADER + "bbbbbbb\t0.9\t40.0\tkeep\tlr\n")
    assert [r.sequence for r in report.created] == [2]


def test_it_refuses_a_file_with_the_wrong_header(experiment):
    with pytest.raises(ResultsFileError) as caught:
        results_import(experiment=experiment, data="commit,val_bpb,memory_gb,status,description\n")
    assert caught.value.line == 1
    assert not experiment.runs.exists()


def test_it_expects_the_experiments_own_objective_in_the_header(experiment):
    experiment.objective = "val_loss"
    header = HEADER.replace("val_bpb", "val_loss")
    report = results_import(experiment=experiment, data=header + "abc1234\t2.5\t10.0\tkeep\tbaseline\n")
    assert report.created[0].objective_value == 2.5
    with pytest.raises(ResultsFileError):
        results_import(experiment=experiment, data=HEADER)


def test_it_refuses_text_that_is_not_utf8(experiment):
    with pytest.raises(ResultsFileError, match="UTF-8"):
        results_import(experiment=experiment, data=HEADER.encode() + b"abc1234\t\xff\n")


def test_it_reads_windows_line_endings_and_a_byte_order_mark(experiment):
    data = ("\ufeff" + HEADER + "abc1234\t0.99\t44.0\tkeep\tbaseline\n").replace("\n", "\r\n").encode()
    report = results_import(experiment=experiment, data=data)
    assert [(r.commit, r.description) for r in report.created] == [("abc1234", "baseline")]
