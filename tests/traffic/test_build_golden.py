"""Golden subsets drawn from a query log: stratified, every category kept, outliers by the production
model's bits per byte, deduplicated, and rebuilt identically from the recorded recipe."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from evals.models import GoldenDataset
from evals.scoring.demo_models import DRIFT_SOURCE, read_passages
from evals.services.traffic import GoldenRecipe, golden_build, pool_surprise, traffic_rows_read
from registry import services as registry_services
from registry.models import Artifact


def log_file(tmp_path, rows, name="log.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def query_log(n_big=600, n_mid=60, n_rare=4):
    rows = [{"prompt": f"billing question {i}", "category": "billing"} for i in range(n_big)]
    rows += [{"prompt": f"refund question {i}", "category": "refunds"} for i in range(n_mid)]
    rows += [{"prompt": f"legal question {i}", "category": "legal"} for i in range(n_rare)]
    rows += [{"prompt": "billing question 1", "category": "billing"}] * 5  # duplicates of one query
    return rows


def build(tmp_path, *args):
    out = io.StringIO()
    call_command("build_golden", "support-golden", "--from", str(log_file(tmp_path, query_log())), *args, stdout=out)
    return GoldenDataset.objects.filter(name="support-golden").order_by("-version").first(), out.getvalue()


def test_it_keeps_every_category_with_its_minimum_and_records_the_recipe(db, tmp_path):
    dataset, out = build(tmp_path, "--size", "100", "--min-per-category", "20", "--seed", "7")

    assert dataset.sample_count == 100
    assert dataset.categories["legal"] == 4  # all it has, below the minimum
    assert dataset.categories["refunds"] >= 20
    assert sum(dataset.categories.values()) == 100
    texts = list(dataset.samples.values_list("text", flat=True))
    assert len(set(texts)) == len(texts)
    assert len(dataset.recipe["source_sha256"]) == 64 and dataset.recipe["source"] == "log.jsonl"
    assert dataset.recipe["seed"] == 7 and dataset.recipe["size"] == 100 and dataset.recipe["min_per_category"] == 20
    assert dataset.recipe["source_rows"] == 664  # the five duplicates dropped
    assert "seed 7" in out


def test_it_rebuilds_the_same_subset_from_its_recipe(db, tmp_path):
    first, _ = build(tmp_path, "--size", "50", "--seed", "11")
    recipe = first.recipe
    path = log_file(tmp_path, query_log(), "again.jsonl")
    again = golden_build(
        name="rebuilt",
        filename=path.name,
        source=path.read_bytes(),
        recipe=GoldenRecipe(
            size=recipe["size"],
            stratify=recipe["stratify"],
            min_per_category=recipe["min_per_category"],
            outliers=recipe["outliers"],
            seed=recipe["seed"],
        ),
    )
    assert again.sha256 == first.sha256
    other, _ = build(tmp_path, "--size", "50", "--seed", "12")
    assert other.sha256 != first.sha256


def test_it_draws_a_seed_when_none_is_given_and_records_it(db, tmp_path):
    dataset, _ = build(tmp_path, "--size", "30", "--stratify", "none", "--min-per-category", "0")
    assert isinstance(dataset.recipe["seed"], int)
    assert dataset.sample_count == 30


def test_it_refuses_outliers_without_a_production_model(db, tmp_path):
    with pytest.raises(CommandError, match="outliers need --family"):
        build(tmp_path, "--outliers", "5%")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("build_golden", "x", "--from", str(tmp_path / "missing.jsonl"))


def test_it_adds_the_samples_the_production_model_finds_most_surprising(
    transactional_db, tmp_path, demo_family, demo_imports, demo_build
):
    registration = registry_services.artifact_register(
        family=demo_family, commit_sha="b" * 40, branch="main", path=str(demo_imports["base"])
    )
    registry_services.artifact_promote(artifact=registration.artifact, reason="baseline for the test")
    assert Artifact.objects.get(pk=registration.artifact.pk).stage == "production"
    prose = [json.loads(line) for line in demo_build.golden.read_text().splitlines() if line.strip()]
    code = [{"id": f"code-{i}", "text": t, "category": "code"} for i, t in enumerate(read_passages(DRIFT_SOURCE)[:3])]
    path = log_file(tmp_path, prose + code)

    call_command(
        "build_golden", "mixed", "--from", str(path), "--size", "20", "--stratify", "none",
        "--min-per-category", "0", "--outliers", "3", "--family", "demo", "--seed", "1", stdout=io.StringIO(),
    )  # fmt: skip

    dataset = GoldenDataset.objects.get(name="mixed")
    outliers = set(dataset.recipe["outlier_ids"])
    kept = set(dataset.samples.values_list("sample_id", flat=True))
    assert len(outliers) == 3 and outliers <= kept and len(kept) == 23
    pool = traffic_rows_read(path.read_bytes(), path.name).samples
    surprise = dict(zip((s["id"] for s in pool), pool_surprise(registration.artifact, pool), strict=True))
    left_out = [value for sample_id, value in surprise.items() if sample_id not in kept]
    assert min(surprise[i] for i in outliers) >= max(left_out)
    # Code surprises a model trained on prose more than prose does.
    code_values = [v for k, v in surprise.items() if k.startswith("code-")]
    assert min(code_values) > sorted(surprise.values())[len(surprise) // 2]
    assert dataset.recipe["weights_sha256"] == registration.artifact.sha256


def test_the_api_shows_the_recipe_of_a_built_subset(db, tmp_path, api_client):
    dataset, _ = build(tmp_path, "--size", "40", "--seed", "3")
    body = api_client.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert body["purpose"] == "golden"
    assert body["recipe"]["seed"] == 3 and body["recipe"]["source"] == "log.jsonl"
