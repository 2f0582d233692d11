"""Malformed input never answers 5xx: hostile safetensors headers, deep or huge JSON in golden files and
webhooks, numbers past any column, Infinity / NaN in float fields, over-long strings and NUL bytes (which
only PostgreSQL refuses to store), absurd query parameters. Each is refused with a 4xx that names the
problem (or, for a cosmetic field, stored cut to its width), and the endpoints that list what was
stored keep answering 200. CI runs this file on SQLite and again on PostgreSQL + Redis.
"""

import io
import json
import struct

import numpy as np
import pytest
from django.test import Client
from safetensors.numpy import save as safetensors_save

from evals.models import ExperimentRun, GoldenDataset
from registry.models import Artifact, PullRequestLink
from tests.factories import ArtifactFactory, ExperimentFactory, FamilyFactory, ThresholdFactory, UserFactory
from tests.webhooks.deliveries import GITHUB_SECRET, GITLAB_SECRET, github_headers, gitlab_headers, payload

DEEP = 100_000  # far past Python's recursion limit
HUGE_INTEGER = "9" * 5000  # past the 4,300 digits Python converts
HUNDREDS_OF_DIGITS = "1" + "0" * 400
LONG = "x" * 10_000


def named(content: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(content)
    upload.name = name
    return upload


@pytest.fixture
def family(db):
    return FamilyFactory(slug="fuzz")


@pytest.fixture
def page_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="fuzz-page-reader", is_staff=True))
    return client


# --- safetensors headers ------------------------------------------------------------------------


def safetensors_with_header(header: bytes, data: bytes = b"\0" * 16) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def entry(**overrides) -> dict:
    return {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], **overrides}}


HOSTILE_HEADERS = {
    "deeply-nested": b"[" * DEEP + b"]" * DEEP,
    "deeply-nested-entry": b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "shape-not-a-list": json.dumps(entry(shape=4)).encode(),
    "shape-a-string": json.dumps(entry(shape="4")).encode(),
    "shape-of-booleans": json.dumps(entry(shape=[True, True])).encode(),
    "dtype-a-list": json.dumps(entry(dtype=["F32"])).encode(),
    "dtype-an-object": json.dumps(entry(dtype={"F32": 1})).encode(),
    "lone-surrogate-name": b'{"\\ud800": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}',
    "huge-integer": f'{{"a": {{"dtype": "F32", "shape": [{HUGE_INTEGER}], "data_offsets": [0, 16]}}}}'.encode(),
    "huge-offset": json.dumps(entry(data_offsets=[0, 10**30])).encode(),
    "offsets-not-a-pair": json.dumps(entry(data_offsets=5)).encode(),
    "entry-a-string": b'{"a": "F32"}',
    "metadata-nested": json.dumps({**entry(), "__metadata__": {"k": {"n": 1}}}).encode(),
    "metadata-a-list": json.dumps({**entry(), "__metadata__": [1]}).encode(),
    "overlapping": json.dumps({**entry(), "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode(),
}


@pytest.mark.parametrize("header", list(HOSTILE_HEADERS.values()), ids=list(HOSTILE_HEADERS))
def test_a_hostile_safetensors_header_is_refused_with_400(api_client, family, header):
    weights = named(safetensors_with_header(header), "w.safetensors")
    response = api_client.post(
        "/api/v1/artifacts/", {"family": "fuzz", "commit": "abc1234", "weights": weights}, format="multipart"
    )
    assert response.status_code == 400, response.content[:500]
    assert response.json()["detail"]
    assert not Artifact.objects.exists()


def test_a_hostile_tensor_name_against_a_base_family_is_refused_with_400(api_client, db, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(safetensors_save({"wte.weight": np.ones(4, dtype=np.float32)}))
    FamilyFactory(slug="based", base_path=str(base))
    header = b'{"wte.weight\\udfff": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    weights = named(safetensors_with_header(header), "w.safetensors")
    response = api_client.post(
        "/api/v1/artifacts/", {"family": "based", "commit": "abc1234", "weights": weights}, format="multipart"
    )
    assert response.status_code == 400


# --- golden files -------------------------------------------------------------------------------

HOSTILE_GOLDEN_LINES = {
    "deeply-nested-line": b'{"text": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deeply-nested-array-line": b"[" * DEEP + b"]" * DEEP,
    "huge-integer-id": f'{{"text": "hello", "id": {HUGE_INTEGER}}}'.encode(),
    "lone-surrogate-text": b'{"text": "caf\\ud800"}',
    "nul-in-text": b'{"text": "before\\u0000after"}',
    "nul-in-id": b'{"text": "hello", "id": "a\\u0000b"}',
    "nul-in-category": b'{"text": "hello", "category": "a\\u0000"}',
    "long-id": json.dumps({"text": "hello", "id": "i" * 5000}).encode(),
    "long-category": json.dumps({"text": "hello", "category": "c" * 5000}).encode(),
    "text-an-object": b'{"text": {"a": 1}}',
}


@pytest.mark.parametrize("line", list(HOSTILE_GOLDEN_LINES.values()), ids=list(HOSTILE_GOLDEN_LINES))
def test_a_hostile_golden_file_is_refused_with_400_naming_the_row(api_client, db, line):
    content = b'{"text": "a fine first row"}\n' + line
    response = api_client.post(
        "/api/v1/datasets/", {"name": "fuzz", "file": named(content, "golden.jsonl")}, format="multipart"
    )
    assert response.status_code == 400, response.content[:500]
    assert response.json()["row"] == 2
    assert not GoldenDataset.objects.exists()


def test_a_csv_with_a_nul_byte_or_a_long_category_is_refused(api_client, db):
    for content in (b"text,category\nhello,a\x00b\n", b"text,category\nhello," + b"c" * 5000 + b"\n"):
        response = api_client.post(
            "/api/v1/datasets/", {"name": "fuzz", "file": named(content, "golden.csv")}, format="multipart"
        )
        assert response.status_code == 400, response.content[:500]
    assert not GoldenDataset.objects.exists()


# --- float fields and numbers -------------------------------------------------------------------

NOT_FINITE = ["Infinity", "-Infinity", "NaN", "inf", "1e400"]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(
    ("sent", "named"),
    [("memory_gb", "memory_gb"), ("objective_value", "objective_value"), ("val_bpb", "objective_value")],
)
def test_a_run_with_a_non_finite_number_is_refused_and_runs_still_list(api_client, db, sent, named, value):
    experiment = ExperimentFactory(slug="loop")
    body = {"commit": "abc1234", "status": "keep", "memory_gb": 10.0, "objective_value": 0.9}
    body = {key: item for key, item in body.items() if key != named} | {sent: value}
    response = api_client.post(f"/api/v1/experiments/{experiment.slug}/runs/", body, format="json")

    assert response.status_code == 400, response.content[:500]
    assert named in response.json()
    assert not ExperimentRun.objects.exists()
    assert api_client.get(f"/api/v1/experiments/{experiment.slug}/runs/").status_code == 200


def test_a_json_number_past_the_float_range_is_refused(api_client, db):
    experiment = ExperimentFactory(slug="loop")
    raw = '{"commit": "abc1234", "status": "keep", "objective_value": 0.9, "memory_gb": 1e400}'
    response = api_client.post(
        f"/api/v1/experiments/{experiment.slug}/runs/", data=raw, content_type="application/json"
    )
    assert response.status_code == 400
    assert "memory_gb" in response.json()


def test_a_train_log_with_numbers_of_hundreds_of_digits_is_stored_without_them(api_client, page_client, db):
    experiment = ExperimentFactory(slug="loop")
    log = "\n".join(
        [
            "step 1",
            "---",
            "val_bpb: 0.99",
            f"peak_vram_mb: {HUNDREDS_OF_DIGITS}",
            f"total_seconds: {HUNDREDS_OF_DIGITS}",
        ]
        + [f"num_steps: -{HUNDREDS_OF_DIGITS}", f"mfu_percent: {HUNDREDS_OF_DIGITS}.5"]
    )
    response = api_client.post(
        f"/api/v1/experiments/{experiment.slug}/runs/",
        {"commit": "abc1234", "status": "keep", "log": log},
        format="json",
    )
    assert response.status_code == 201, response.content[:500]
    run = ExperimentRun.objects.get()
    assert run.objective_value == 0.99 and run.memory_gb is None
    assert api_client.get(f"/api/v1/experiments/{experiment.slug}/runs/").status_code == 200
    assert page_client.get(f"/experiments/{experiment.slug}/").status_code == 200


@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_threshold_limit_that_is_not_finite_is_refused(staff_client, family, value):
    body = {
        "scope": "family",
        "family": "fuzz",
        "metric": "bits_per_byte",
        "rule": "relative",
        "limit": value,
        "severity": "block",
        "rationale": "fuzz",
        "owner": "ml",
    }
    response = staff_client.post("/api/v1/thresholds/", body, format="json")
    assert response.status_code == 400, response.content[:500]
    assert "limit" in response.json()
    threshold = ThresholdFactory(family=family)
    patched = staff_client.patch(f"/api/v1/thresholds/{threshold.pk}/", {"limit": value}, format="json")
    assert patched.status_code == 400 and "limit" in patched.json()
    assert staff_client.get("/api/v1/thresholds/").status_code == 200


@pytest.mark.parametrize("value", NOT_FINITE)
def test_the_backtest_form_refuses_a_limit_that_is_not_finite(page_client, family, value):
    threshold = ThresholdFactory(family=family)
    response = page_client.get(
        f"/thresholds/{threshold.pk}/", {"rule": "relative", "limit": value, "severity": "block"}
    )
    assert response.status_code == 200
    assert "Enter a number" in response.content.decode()


# --- query parameters ---------------------------------------------------------------------------

ABSURD_IDS = [str(10**30), "²", "٣", "-1", "1e3", "9" * 19, " 1"]


@pytest.mark.parametrize("value", ABSURD_IDS)
def test_pages_ignore_query_ids_that_are_no_ids(page_client, family, value):
    experiment = ExperimentFactory(slug="loop")
    artifact = ArtifactFactory(family=family)
    urls = [
        f"/families/fuzz/?dataset={value}&metric=bits_per_byte",
        f"/families/fuzz/compare/?a={value}&b={artifact.pk}&dataset={value}",
        f"/families/fuzz/compare/?a={artifact.pk}&b={value}",
        f"/families/fuzz/traffic/?window={value}",
        f"/artifacts/compare/?pick={value}&pick={artifact.pk}",
        f"/artifacts/?page={value}",
        f"/experiments/{experiment.slug}/compare/?a={value}&b={value}",
        f"/experiments/{experiment.slug}/?page={value}",
    ]
    for url in urls:
        status = page_client.get(url).status_code
        assert status < 500, (url, status)


@pytest.mark.parametrize(
    "url",
    [
        "/artifacts/?commit=%00",
        "/artifacts/?branch=a%00b",
        "/api/v1/artifacts/?family=%00",
        "/api/v1/artifacts/?commit=ab%00",
        "/families/fuzz/?metric=%00",
    ],
)
def test_a_nul_byte_in_a_query_parameter_is_refused_with_400(page_client, api_client, family, url):
    client = api_client if url.startswith("/api/") else page_client
    assert client.get(url).status_code == 400


def test_over_long_query_filters_find_nothing(page_client, api_client, family):
    assert page_client.get("/artifacts/", {"commit": LONG, "branch": LONG, "family": LONG}).status_code == 200
    assert api_client.get("/api/v1/artifacts/", {"commit": LONG, "branch": LONG}).json()["count"] == 0


# --- webhooks -----------------------------------------------------------------------------------


@pytest.fixture
def webhook_secrets(settings):
    settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET = GITHUB_SECRET
    settings.DRIFTBOARD_GITLAB_WEBHOOK_SECRET = GITLAB_SECRET


def send_github_raw(client, raw: bytes, event: str = "pull_request"):
    return client.post("/hooks/github/", data=raw, content_type="application/json", headers=github_headers(event, raw))


def github_pull(**changes) -> bytes:
    body = payload("github_pull_request_opened")
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return json.dumps(body).encode()


HOSTILE_GITHUB_BODIES = {
    "deeply-nested": b'{"action": "opened", "pull_request": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "huge-integer": b'{"action": "opened", "number": ' + HUGE_INTEGER.encode() + b"}",
    "number-10**30": github_pull(pull_request__number=10**30),
    "number-negative": github_pull(pull_request__number=-3),
    "number-superscript": github_pull(pull_request__number="²"),
    "head-sha-10000-chars": github_pull(pull_request__head__sha="a" * 10_000),
    "head-sha-not-hex": github_pull(pull_request__head__sha="not a sha"),
    "head-sha-nul": github_pull(pull_request__head__sha="abcd\u0000"),
    "repository-10000-chars": github_pull(repository__full_name=LONG),
    "repository-nul": github_pull(repository__full_name="acme/we\u0000ights"),
    "repository-an-object": github_pull(repository__full_name={"a": 1}),
    "base-ref-10000-chars": github_pull(pull_request__base__ref=LONG),
    "state-long": github_pull(pull_request__state=LONG),
    "title-nul": github_pull(pull_request__title="fix\u0000"),
    "title-lone-surrogate": github_pull(pull_request__title="\ud800"),
}


@pytest.mark.parametrize("raw", list(HOSTILE_GITHUB_BODIES.values()), ids=list(HOSTILE_GITHUB_BODIES))
def test_a_hostile_signed_github_delivery_is_refused_with_400(client, db, webhook_secrets, raw):
    response = send_github_raw(client, raw)
    assert response.status_code == 400, response.content[:500]
    assert response.json()["detail"]
    assert not PullRequestLink.objects.exists()


def test_a_long_github_title_is_stored_cut_to_its_width(client, db, webhook_secrets):
    response = send_github_raw(client, github_pull(pull_request__title=LONG))
    assert response.status_code == 200
    assert PullRequestLink.objects.get().title == LONG[:500]


@pytest.mark.parametrize(
    "body",
    [
        {"ref": "refs/heads/main", "before": "a" * 10_000, "after": "b" * 40, "repository": {"full_name": "a/b"}},
        {"ref": "refs/heads/main", "before": "a" * 40, "after": "b\u0000", "repository": {"full_name": "a/b"}},
        {"ref": LONG, "before": "a" * 40, "after": "b" * 40, "repository": {"full_name": "a/b"}},
        {"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40, "repository": {"full_name": LONG}},
    ],
    ids=["long-before", "nul-after", "long-ref", "long-repository"],
)
def test_a_hostile_signed_github_push_is_refused_with_400(client, db, webhook_secrets, body):
    assert send_github_raw(client, json.dumps(body).encode(), event="push").status_code == 400


def gitlab_merge_request(**attributes) -> bytes:
    body = payload("gitlab_merge_request_open")
    body["object_attributes"].update(attributes)
    return json.dumps(body).encode()


HOSTILE_GITLAB_BODIES = {
    "deeply-nested": b'{"object_attributes": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "iid-10**30": gitlab_merge_request(iid=10**30),
    "last-commit-10000-chars": gitlab_merge_request(last_commit={"id": "a" * 10_000}),
    "target-branch-nul": gitlab_merge_request(target_branch="main\u0000"),
    "state-an-object": gitlab_merge_request(state={"a": 1}),
}


@pytest.mark.parametrize("raw", list(HOSTILE_GITLAB_BODIES.values()), ids=list(HOSTILE_GITLAB_BODIES))
def test_a_hostile_gitlab_delivery_is_refused_with_400(client, db, webhook_secrets, raw):
    response = client.post("/hooks/gitlab/", data=raw, content_type="application/json", headers=gitlab_headers())
    assert response.status_code == 400, response.content[:500]
    assert not PullRequestLink.objects.exists()


# --- API text fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/experiments/", {"slug": "a\u0000b", "objective": "val_bpb"}),
        ("/api/v1/experiments/", {"slug": "s" * 5000, "objective": "val_bpb"}),
        (
            "/api/v1/experiments/loop/runs/",
            {"commit": "abc1234", "status": "keep", "objective_value": 1, "description": "a\u0000"},
        ),
        ("/api/v1/experiments/loop/runs/", {"commit": "abc1234", "status": "crash", "log": "Traceback\u0000"}),
    ],
    ids=["slug-nul", "slug-long", "description-nul", "log-nul"],
)
def test_api_text_fields_refuse_nul_bytes_and_over_long_values(staff_client, db, url, body):
    ExperimentFactory(slug="loop")
    assert staff_client.post(url, body, format="json").status_code == 400


def test_a_results_tsv_with_nul_bytes_and_huge_numbers_keeps_its_valid_rows(api_client, db):
    experiment = ExperimentFactory(slug="loop")
    rows = [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        "abc1234\t0.99\t10.0\tkeep\tbaseline",
        "abc1235\t0.98\t10.0\tkeep\tnul \x00 in the description",
        f"abc1236\t{HUNDREDS_OF_DIGITS}\t10.0\tkeep\tbig",
        "abc1237\tinf\t10.0\tkeep\tinfinite",
        "abc1238\t0.97\tnan\tdiscard\tnan memory",
    ]
    upload = named("\n".join(rows).encode(), "results.tsv")
    response = api_client.post(f"/api/v1/experiments/{experiment.slug}/import/", {"file": upload}, format="multipart")
    assert response.status_code < 500, response.content[:500]
    assert api_client.get(f"/api/v1/experiments/{experiment.slug}/runs/").status_code == 200
    assert list(ExperimentRun.objects.values_list("commit", flat=True)) == ["abc1234"]
    assert all("\x00" not in run.description for run in ExperimentRun.objects.all())
