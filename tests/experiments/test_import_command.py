"""`manage.py import_results SLUG FILE`."""

import pytest
from django.core.management import CommandError, call_command

from evals.models import Experiment


def test_it_creates_the_experiment_and_imports_the_file(db, capsys, tmp_path, results_bytes):
    path = tmp_path / "results.tsv"
    path.write_bytes(results_bytes)
    call_command("import_results", "mar5", str(path), "--hardware", "1× H100", "--time-budget", "600")
    out, err = capsys.readouterr()
    experiment = Experiment.objects.get(slug="mar5")
    assert (experiment.hardware, experiment.time_budget_s, experiment.runs.count()) == ("1× H100", 600, 34)
    assert "34 new runs, 0 already imported, 4 malformed lines" in out
    assert [line.split(":")[1] for line in err.splitlines()] == ["13", "18", "22", "33"]


def test_it_imports_only_new_rows_when_run_again(db, capsys, tmp_path, results_bytes):
    path = tmp_path / "results.tsv"
    path.write_bytes(b"\n".join(results_bytes.split(b"\n")[:11]) + b"\n")
    call_command("import_results", "mar5", str(path))
    path.write_bytes(results_bytes)
    call_command("import_results", "mar5", str(path))
    out, _ = capsys.readouterr()
    assert "24 new runs, 10 already imported" in out
    assert Experiment.objects.get(slug="mar5").runs.count() == 34


def test_it_leaves_no_experiment_behind_for_an_unreadable_file(db, tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("commit,val_bpb\n")
    with pytest.raises(CommandError, match="header"):
        call_command("import_results", "mar6", str(path))
    assert not Experiment.objects.filter(slug="mar6").exists()


def test_it_refuses_a_missing_file(db, tmp_path):
    with pytest.raises(CommandError, match="not a file"):
        call_command("import_results", "mar5", str(tmp_path / "missing.tsv"))
