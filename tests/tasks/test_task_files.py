"""lm-evaluation-harness task files with local data: imported as golden datasets and evaluated
directly, with the harness's own numbers; what would run code or fetch data is refused."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from evals.models import GoldenDataset
from evals.scoring.task_files import TaskFileError, read_task_file
from tests.tasks.harness import harness_samples, write_task
from tests.tasks.test_multiple_choice_parity import continuation_questions

# Written as the harness's own arc_easy.yaml, with local data instead of the hub's.
ARC_TASK = """output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
should_decontaminate: true
doc_to_decontamination_query: "Question: {{question}}\\nAnswer:"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
GENERATION_TASK = """output_type: generate_until
doc_to_text: "Q: {{question}}\\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "Q:"]
  do_sample: false
metric_list:
  - metric: exact_match
"""


def arc_docs() -> list[dict]:
    labels = "ABCD"
    return [
        {
            "id": f"arc-{index}",
            "question": question["context"],
            "choices": {"text": question["choices"], "label": list(labels[: len(question["choices"])])},
            "answerKey": labels[question["answer"]],
        }
        for index, question in enumerate(continuation_questions())
    ]


@pytest.fixture
def arc_task(tmp_path):
    return write_task(tmp_path / "arc", "arc_local", arc_docs(), ARC_TASK)


@pytest.mark.django_db
def test_it_imports_a_task_file_as_a_golden_dataset_with_its_sha256(arc_task):
    call_command("import_task", str(arc_task), "--name", "arc")
    dataset = GoldenDataset.objects.get(name="arc")
    first = dataset.samples.order_by("position").first()
    assert dataset.sample_count == len(arc_docs())
    assert dataset.recipe["task_sha256"] == __import__("hashlib").sha256(arc_task.read_bytes()).hexdigest()
    assert first.prompt == f"Question: {arc_docs()[0]['question']}\nAnswer:"
    assert (first.choices, first.answer) == (arc_docs()[0]["choices"]["text"], [0])


def test_it_evaluates_a_task_file_with_the_harness_numbers(arc_task, task_model_dirs, capsys):
    call_command("evaluate", "--weights", str(task_model_dirs["gpt2"]), "--subset", str(arc_task), "--json")
    report = json.loads(capsys.readouterr().out)
    logged = harness_samples(task_model_dirs["gpt2"], arc_task)
    assert report["samples"] == len(logged)
    assert report["metrics"]["accuracy"] == pytest.approx(sum(s["acc"] for s in logged) / len(logged))
    assert report["metrics"]["accuracy_norm"] == pytest.approx(sum(s["acc_norm"] for s in logged) / len(logged))


def test_it_reads_a_generation_task_with_its_target_and_stop_strings(tmp_path):
    docs = [{"question": "Two and two?", "answer": "four"}, {"question": "The sky?", "answer": "blue"}]
    task = read_task_file(write_task(tmp_path, "qa", docs, GENERATION_TASK))
    assert task.output_type == "generate_until" and task.until == ["\n", "Q:"]
    assert [(s["prompt"], s["reference"]) for s in task.samples] == [
        ("Q: Two and two?\nA:", "four"),
        ("Q: The sky?\nA:", "blue"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("doc_to_text: !function utils.doc_to_text\n", "line 7: `!function utils.doc_to_text` is refused"),
        ("include: ../outside.yaml\n", "line 7: include '../outside.yaml' is refused"),
        ("doc_to_text: '{{ question.__class__.__mro__ }}'\n", "doc_to_text cannot render document 0"),
    ],
)
def test_it_refuses_what_would_run_code_or_leave_the_folder(tmp_path, body, message):
    (tmp_path / "outside.yaml").write_text("output_type: multiple_choice\n")
    without_text = ARC_TASK.replace('doc_to_text: "Question: {{question}}\\nAnswer:"\n', "", 1)
    task = write_task(tmp_path / "task", "refused", arc_docs(), body + without_text)
    with pytest.raises(TaskFileError) as refused:
        read_task_file(task)
    assert message in str(refused.value)


def test_it_refuses_a_remote_dataset_naming_the_line(tmp_path):
    task = tmp_path / "remote.yaml"
    task.write_text("task: remote\ndataset_path: allenai/ai2_arc\ntest_split: test\n" + ARC_TASK)
    with pytest.raises(TaskFileError, match="line 2: dataset_path 'allenai/ai2_arc' is not local"):
        read_task_file(task)


@pytest.mark.django_db
def test_it_says_what_is_wrong_in_the_command(tmp_path):
    task = write_task(tmp_path, "bad", arc_docs(), "doc_to_text: !function utils.x\n" + ARC_TASK)
    with pytest.raises(CommandError, match="bad.yaml: line 7"):
        call_command("import_task", str(task))
    assert not GoldenDataset.objects.exists()


def upload(client, task_text: str, name: str | None = None):
    data = {"file": SimpleUploadedFile("arc.yaml", task_text.encode())} | ({"name": name} if name else {})
    return client.post("/api/v1/datasets/import-task/", data, format="multipart")


def test_it_imports_an_uploaded_task_whose_data_lie_in_the_import_folders(api_client, import_root, tmp_path):
    local = write_task(import_root / "arc-upload", "arc_upload", arc_docs(), ARC_TASK)
    outside = write_task(tmp_path / "elsewhere", "arc_elsewhere", arc_docs(), ARC_TASK)

    imported = upload(api_client, local.read_text(), name="arc-api")
    refused = upload(api_client, outside.read_text())

    assert imported.status_code == 201, imported.json()
    assert (imported.json()["name"], imported.json()["samples"]) == ("arc-api", len(arc_docs()))
    assert imported.json()["recipe"]["output_type"] == "multiple_choice"
    assert refused.status_code == 400
    assert refused.json() == {"file": ["data file 'docs.jsonl' is outside the folders data may be imported from"]}
    assert str(tmp_path) not in refused.content.decode()


def test_it_generates_as_the_harness_on_a_generation_task(tmp_path, task_model_dirs, capsys):
    docs = [{"question": question["context"][:60], "answer": "x"} for question in continuation_questions()[:6]]
    body = GENERATION_TASK.replace('until: ["\\n", "Q:"]', 'until: ["e", "Q:"]\n  max_gen_toks: 12')
    assert "max_gen_toks: 12" in body
    task = write_task(tmp_path, "qa_local", docs, body)
    call_command(
        "evaluate", "--weights", str(task_model_dirs["gpt2"]), "--subset", str(task), "--max-new-tokens", "12", "--json"
    )
    ours = [generation["text"] for generation in json.loads(capsys.readouterr().out)["generations"]]
    assert ours == [logged["filtered_resps"][0] for logged in harness_samples(task_model_dirs["gpt2"], task)]
