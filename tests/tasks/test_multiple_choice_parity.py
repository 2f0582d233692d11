"""The multiple-choice scorer against lm-evaluation-harness running the same local task file."""

import numpy as np
import pytest

from evals.scoring.choices import choice_loglikelihoods
from evals.scoring.scorers import SCORERS
from tests.scoring.tiny_lm import stdlib_docstrings
from tests.tasks.conftest import ARCHITECTURES
from tests.tasks.harness import harness_samples, write_task

TOLERANCE = 1e-4
MC_TASK = """output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def continuation_questions() -> list[dict]:
    """'Which words continue this passage?': the true words among other passages' words. One
    context ends in a space and one in a newline (the harness moves them into the choices), and
    one is longer than the 64-token window (the harness truncates it from the left)."""
    passages = [text.split() for text in stdlib_docstrings(60_000) if len(text.split()) >= 40][:12]
    questions = []
    for index, words in enumerate(passages):
        cut = 8 + index % 5
        context = " ".join(words[: 90 if index == 3 else cut])
        context += {1: " ", 2: "\n"}.get(index, "")
        others = [passages[(index + shift) % len(passages)] for shift in (1, 2, 3)]
        choices = [" ".join(other[cut : cut + 2 + index % 3]) for other in others]
        answer = index % 4
        choices.insert(answer, " ".join(words[cut : cut + 2 + index % 3]))
        questions.append({"context": context, "choices": choices, "answer": answer})
    return questions


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return continuation_questions()


@pytest.fixture(scope="module")
def harness(tmp_path_factory, task_model_dirs, questions) -> dict[str, list[dict]]:
    task = write_task(tmp_path_factory.mktemp("mc-task"), "continuations", questions, MC_TASK)
    return {name: harness_samples(task_model_dirs[name], task) for name in ARCHITECTURES}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_it_gives_each_choice_the_harness_loglikelihood(task_models, harness, questions, architecture):
    lm = task_models[architecture]
    for question, logged in zip(questions, harness[architecture], strict=True):
        ours = choice_loglikelihoods(lm, question["context"], [" " + choice for choice in question["choices"]])
        theirs = [float(loglikelihood) for loglikelihood, _ in logged["filtered_resps"]]
        np.testing.assert_allclose(ours.loglikelihoods, theirs, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_it_gives_each_question_the_harness_acc_and_acc_norm(task_models, harness, questions, architecture):
    samples = [{"prompt": q["context"], "choices": q["choices"], "answer": [q["answer"]]} for q in questions]
    output = SCORERS["multiple-choice"].score(
        task_models[architecture], samples, max_length=None, token_budget=None, progress=None
    )
    ours = [(values["accuracy"], values["accuracy_norm"]) for values in output.values]
    assert ours == [(logged["acc"], logged["acc_norm"]) for logged in harness[architecture]]
