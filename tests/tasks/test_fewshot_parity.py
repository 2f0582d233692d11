"""Few-shot task files: each document's context as lm-evaluation-harness builds it (the description,
`num_fewshot` solved documents drawn with its seed, then the question), and the harness's numbers
on those contexts."""

import json

import numpy as np
import pytest
from django.core.management import call_command

from evals.models import GoldenDataset
from evals.scoring.choices import choice_loglikelihoods
from evals.scoring.scorers import SCORERS
from evals.scoring.task_files import TaskFileError, read_task_file
from tests.tasks.harness import harness_requests, harness_samples, write_task
from tests.tasks.test_task_files import ARC_TASK, GENERATION_TASK, arc_docs

TOLERANCE = 1e-4
ARC_FEWSHOT = ARC_TASK + "num_fewshot: 3\nfewshot_split: test\n"


def duplicated_docs() -> list[dict]:
    """Half the split is one document: drawing it with its copies leaves too few shots, and the
    harness draws again without them."""
    docs = arc_docs()[:6]
    return docs + [docs[0]] * 6


VARIANTS = {
    "the evaluated split, without the document itself": (ARC_FEWSHOT, arc_docs(), None),
    "a training split": (ARC_TASK + "num_fewshot: 3\nfewshot_split: train\n", arc_docs()[:8], arc_docs()[8:]),
    "the training split named as such": (
        ARC_TASK + "num_fewshot: 2\ntraining_split: train\n",
        arc_docs()[:8],
        arc_docs()[8:],
    ),
    "a description template and delimiters": (
        ARC_FEWSHOT + 'description: "About {{id}}:\\n"\nfewshot_delimiter: "\\n###\\n"\ntarget_delimiter: "\\t"\n',
        arc_docs(),
        None,
    ),
    "the first documents": (ARC_FEWSHOT + "fewshot_config:\n  sampler: first_n\n", arc_docs(), None),
    "documents asked their own way, fewshot_indices unused": (
        ARC_FEWSHOT + 'fewshot_config:\n  fewshot_indices: [5, 1, 7, 2, 9]\n  doc_to_text: "Q: {{question}}"\n',
        arc_docs(),
        None,
    ),
    "copies of the document in the split": (ARC_FEWSHOT, duplicated_docs(), None),
    "solved documents written in the task file": (
        ARC_TASK + f"num_fewshot: 2\nfewshot_config:\n  samples: {json.dumps(arc_docs()[8:])}\n",
        arc_docs()[:8],
        None,
    ),
    "a generation task": (
        GENERATION_TASK.replace('generation_kwargs:\n  until: ["\\n", "Q:"]\n', "generation_kwargs:\n")
        + 'num_fewshot: 2\nfewshot_split: train\ndescription: "Answer briefly.\\n\\n"\n',
        [{"question": f"Question {n}?", "answer": [f"answer {n}"]} for n in range(6)],
        [{"question": f"Solved {n}?", "answer": [f"solution {n}", "other"]} for n in range(4)],
    ),
}


def our_requests(task) -> list[list[tuple]]:
    """Our samples as the harness's requests: (context, delimiter + choice) per choice, or
    (context, stop strings)."""
    imported = read_task_file(task)
    if imported.output_type == "generate_until":
        return [[(sample["prompt"], imported.until)] for sample in imported.samples]
    delimiter = imported.target_delimiter
    return [[(sample["prompt"], delimiter + choice) for choice in sample["choices"]] for sample in imported.samples]


@pytest.mark.parametrize("variant", VARIANTS)
def test_it_builds_each_context_as_the_harness(tmp_path, variant):
    body, docs, train = VARIANTS[variant]
    task = write_task(tmp_path, "fewshot", docs, body, train=train)
    theirs = [
        [(context, arguments["until"] if isinstance(arguments, dict) else arguments) for context, arguments in doc]
        for doc in harness_requests(task)
    ]
    assert our_requests(task) == theirs


def test_it_keeps_each_document_out_of_its_own_context(tmp_path):
    samples = read_task_file(write_task(tmp_path, "arc", arc_docs(), ARC_FEWSHOT)).samples
    for sample, doc in zip(samples, arc_docs(), strict=True):
        assert sample["prompt"].count(f"Question: {doc['question']}\nAnswer:") == 1
        assert sample["prompt"].endswith(f"Question: {doc['question']}\nAnswer:")


def test_it_records_the_shots_and_the_seed_in_the_recipe(tmp_path):
    recipe = read_task_file(write_task(tmp_path, "arc", arc_docs(), ARC_FEWSHOT)).recipe
    assert (recipe["num_fewshot"], recipe["fewshot_seed"]) == (3, 1234)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("num_fewshot: 12\nfewshot_split: test\n", "num_fewshot 12: the few-shot split holds only 12 documents"),
        ("num_fewshot: 2\nfewshot_config:\n  process_docs: x\n", "fewshot_config process_docs is not read"),
        ("num_fewshot: 2\nfewshot_config:\n  sampler: balanced\n", "sampler 'balanced': use default or first_n"),
        ("num_fewshot: -1\n", "line 7: num_fewshot -1 is not a count"),
        ("gen_prefix: 'Answer:'\n", "line 7: gen_prefix is not read yet"),
    ],
)
def test_it_refuses_few_shot_settings_it_cannot_follow(tmp_path, body, message):
    task = write_task(tmp_path, "refused", arc_docs(), body + ARC_TASK)
    with pytest.raises(TaskFileError, match=message):
        read_task_file(task)


@pytest.fixture(scope="module")
def arc_fewshot(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("arc-fewshot"), "arc_fewshot", arc_docs(), ARC_FEWSHOT)


@pytest.mark.django_db
def test_it_scores_an_imported_few_shot_task_as_the_harness(arc_fewshot, task_model_dirs, task_models):
    call_command("import_task", str(arc_fewshot), "--name", "arc-3-shot")
    dataset = GoldenDataset.objects.get(name="arc-3-shot")
    samples = [
        {"prompt": sample.prompt, "choices": sample.choices, "answer": sample.answer}
        for sample in dataset.samples.order_by("position")
    ]
    logged = harness_samples(task_model_dirs["gpt2"], arc_fewshot)
    lm = task_models["gpt2"]

    assert [sample["prompt"] for sample in samples] == [doc["arguments"][0][0] for doc in logged]
    for sample, doc in zip(samples, logged, strict=True):
        ours = choice_loglikelihoods(lm, sample["prompt"], [" " + choice for choice in sample["choices"]])
        theirs = [float(loglikelihood) for loglikelihood, _ in doc["filtered_resps"]]
        np.testing.assert_allclose(ours.loglikelihoods, theirs, rtol=TOLERANCE, atol=TOLERANCE)
    output = SCORERS["multiple-choice"].score(lm, samples, max_length=None, token_budget=None, progress=None)
    assert [(values["accuracy"], values["accuracy_norm"]) for values in output.values] == [
        (doc["acc"], doc["acc_norm"]) for doc in logged
    ]


def test_it_generates_as_the_harness_on_a_few_shot_generation_task(tmp_path, task_model_dirs, capsys):
    docs = [{"question": f"Which {word}?", "answer": "x"} for word in ("one", "two", "three", "four")]
    train = [{"question": f"Why {word}?", "answer": f"as {word}"} for word in ("this", "that", "those")]
    body = GENERATION_TASK.replace('until: ["\\n", "Q:"]', 'until: ["e"]\n  max_gen_toks: 8')
    task = write_task(tmp_path, "qa_fewshot", docs, body + "num_fewshot: 2\nfewshot_split: train\n", train=train)
    call_command(
        "evaluate", "--weights", str(task_model_dirs["gpt2"]), "--subset", str(task), "--max-new-tokens", "8", "--json"
    )
    ours = [generation["text"] for generation in json.loads(capsys.readouterr().out)["generations"]]
    assert ours == [logged["filtered_resps"][0] for logged in harness_samples(task_model_dirs["gpt2"], task)]
