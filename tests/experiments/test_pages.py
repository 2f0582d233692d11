"""Experiment pages through the real client: list, review, compare, upload, weight registration."""

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from safetensors.numpy import save_file

from evals.models import Experiment, ExperimentRun
from registry.models import Artifact
from tests.factories import ExperimentFactory, ExperimentRunFactory, FamilyFactory


@pytest.fixture
def reader(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def chart_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="experiment-chart-data" type="application/json">') + len(
        '<script id="experiment-chart-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_it_lists_experiments_with_their_figures(reader, imported):
    response = reader.get("/experiments/")
    assert response.status_code == 200
    html = response.content.decode()
    assert imported.get_absolute_url() in html
    assert "cf2a3b4" in html and "0.981800" in html


def test_it_creates_an_experiment_from_the_list_page(reader):
    response = reader.post(
        "/experiments/", {"slug": "apr1", "objective": "val_bpb", "direction": "lower", "time_budget_s": 300}
    )
    assert response.status_code == 302
    assert response["Location"] == "/experiments/apr1/import/"
    assert Experiment.objects.filter(slug="apr1").exists()


def test_it_shows_the_review_and_the_chart_data(reader, imported):
    response = reader.get(imported.get_absolute_url())
    assert response.status_code == 200
    data = chart_data(response)
    assert [r["sequence"] for r in data["runs"]] == list(range(1, 35))
    assert [(p["sequence"], p["value"]) for p in data["frontier"]][-1] == (34, 0.9818)
    assert {r["status"] for r in data["runs"]} == {"keep", "discard", "crash"}
    html = response.content.decode()
    for text in ("Failure log", "out of memory", "shape mismatch", "Runs per day", "44 %", "+1.61 %"):
        assert text in html
    assert "js/experiments.js" in html and "plotly/plotly.min.js" in html


@pytest.mark.parametrize("page", ["", "compare/"])
def test_it_renders_pages_in_a_constant_number_of_queries(reader, django_assert_num_queries, page):
    experiment = ExperimentFactory(slug="growing")
    ExperimentRunFactory(experiment=experiment, sequence=1)
    with CaptureQueriesContext(connection) as one_run:
        assert reader.get(f"/experiments/growing/{page}").status_code == 200
    statuses = ["keep", "discard", "crash"]
    for sequence in range(2, 31):
        status = statuses[sequence % 3]
        ExperimentRunFactory(
            experiment=experiment,
            sequence=sequence,
            status=status,
            objective_value=None if status == "crash" else 1.0 - sequence / 100,
            crash_reason="OOM" if status == "crash" else "",
        )
    with django_assert_num_queries(len(one_run.captured_queries)):
        assert reader.get(f"/experiments/growing/{page}").status_code == 200


def test_it_lists_experiments_in_a_constant_number_of_queries(reader, django_assert_num_queries):
    ExperimentRunFactory()
    with CaptureQueriesContext(connection) as one:
        reader.get("/experiments/")
    ExperimentRunFactory.create_batch(4)
    with django_assert_num_queries(len(one.captured_queries)):
        reader.get("/experiments/")


def test_it_compares_two_runs_side_by_side(reader, imported, train_log):
    from evals.services.experiments import experiment_run_record

    experiment_run_record(
        experiment=imported, commit="dd00ee1", status="keep", log=train_log.replace("0.981800", "0.980900")
    )
    run = imported.runs.get(sequence=35)
    response = reader.get(f"{imported.get_absolute_url()}compare/?a=34&b={run.sequence}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cf2a3b4" in html and "dd00ee1" in html
    assert "-0.0009" in html and "better" in html
    assert "summary: num_steps" in html


def test_it_compares_the_first_run_with_the_best_by_default(reader, imported):
    response = reader.get(f"{imported.get_absolute_url()}compare/")
    assert (response.context["a"].sequence, response.context["b"].sequence) == (1, 34)


def test_it_pages_the_runs_table_newest_first(reader, db):
    experiment = ExperimentFactory(slug="long")
    ExperimentRunFactory.create_batch(150, experiment=experiment)
    first = reader.get("/experiments/long/").context["table"]
    second = reader.get("/experiments/long/?page=2").context["table"]
    sequences = [run.sequence for run in first.object_list] + [run.sequence for run in second.object_list]
    assert sequences == sorted(experiment.runs.values_list("sequence", flat=True), reverse=True)
    assert len(first.object_list) == 100


def test_it_imports_an_uploaded_results_file(reader, experiment, results_bytes):
    url = f"{experiment.get_absolute_url()}import/"
    response = reader.post(url, {"file": SimpleUploadedFile("results.tsv", results_bytes)})
    assert response.status_code == 200
    html = response.content.decode()
    assert experiment.runs.count() == 34
    for line in (13, 18, 22, 33):
        assert f'<td class="num">{line}</td>' in html
    reader.post(url, {"file": SimpleUploadedFile("results.tsv", results_bytes)})
    assert experiment.runs.count() == 34


def test_it_shows_a_wrong_header_on_the_upload_form(reader, experiment):
    response = reader.post(f"{experiment.get_absolute_url()}import/", {"file": SimpleUploadedFile("r.tsv", b"x\ty\n")})
    assert response.status_code == 200
    assert "the header must be" in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/experiments/",
        "/experiments/nanochat-h100/",
        "/experiments/nanochat-h100/compare/",
        "/experiments/nanochat-h100/import/",
        "/experiments/nanochat-h100/runs/1/register/",
    ],
)
def test_it_sends_anonymous_visitors_to_log_in(client, imported, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def weights_file(folder, name: str = "model.safetensors"):
    path = folder / name
    save_file({"wte.weight": np.ones((4, 2), dtype=np.float32)}, str(path))
    return path


def test_it_lets_only_staff_register_weights(reader, imported, import_root):
    url = f"{imported.get_absolute_url()}runs/34/register/"
    family = FamilyFactory()
    response = reader.post(url, {"family": family.slug, "path": str(weights_file(import_root))})
    assert response.status_code == 403
    assert not Artifact.objects.exists()


def test_it_registers_a_kept_runs_weights_from_a_server_path(staff, imported, import_root):
    family = FamilyFactory()
    response = staff.post(
        f"{imported.get_absolute_url()}runs/34/register/",
        {"family": family.slug, "path": str(weights_file(import_root, "run34.safetensors"))},
    )
    artifact = Artifact.objects.get(family=family)
    assert response.status_code == 302 and response["Location"] == artifact.get_absolute_url()
    assert artifact.commit_sha == "cf2a3b4"
    assert ExperimentRun.objects.get(experiment=imported, sequence=34).artifact == artifact


def test_it_registers_uploaded_weights(staff, imported, tmp_path):
    family = FamilyFactory()
    content = weights_file(tmp_path).read_bytes()
    staff.post(
        f"{imported.get_absolute_url()}runs/32/register/",
        {"family": family.slug, "weights": SimpleUploadedFile("run32.safetensors", content)},
    )
    assert ExperimentRun.objects.get(experiment=imported, sequence=32).artifact.family == family


def test_it_refuses_paths_outside_the_import_roots(staff, imported, tmp_path):
    family = FamilyFactory()
    response = staff.post(
        f"{imported.get_absolute_url()}runs/34/register/", {"family": family.slug, "path": str(weights_file(tmp_path))}
    )
    assert response.status_code == 200
    assert "outside the allowed import roots" in response.content.decode()
    assert ExperimentRun.objects.get(experiment=imported, sequence=34).artifact is None


def test_it_registers_no_weights_for_a_discarded_run(staff, imported, import_root):
    family = FamilyFactory()
    response = staff.post(
        f"{imported.get_absolute_url()}runs/3/register/",
        {"family": family.slug, "path": str(weights_file(import_root))},
    )
    assert "Only the weights of a kept run" in response.content.decode()
    assert not Artifact.objects.exists()
