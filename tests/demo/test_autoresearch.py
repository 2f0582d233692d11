"""The demo's autoresearch loop: real budgeted training runs, real val_bpb, a real crash, posted through the
run API while the server runs."""

import math

import pytest
import torch
from rest_framework.authtoken.models import Token
from transformers import PreTrainedTokenizerFast

from evals.models import Experiment, ExperimentRun
from evals.scoring.autoresearch import BROKEN_EVERY, autoresearch_runs
from evals.scoring.demo_models import split_corpus
from evals.services.demo import DEMO_EXPERIMENT, demo_autoresearch
from tests.factories import UserFactory

BUDGET_S = 1.0
VAL_TEXTS = 8
VAL_CHARS = 120


@pytest.fixture(scope="module")
def tokenizer(demo_build) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(demo_build.base)


@pytest.fixture(scope="module")
def val_texts() -> list[str]:
    """Held-out passages cut to fit one context window, so the reference below needs no windowing."""
    return [sample.text[:VAL_CHARS] for sample in split_corpus().golden[:VAL_TEXTS]]


@torch.no_grad()
def reference_bits_per_byte(model, tokenizer, texts) -> float:
    """transformers' own shifted loss (labels=input_ids) over end-of-text + each text."""
    nll, size = 0.0, 0
    for text in texts:
        ids = torch.tensor([[tokenizer.eos_token_id, *tokenizer.encode(text, add_special_tokens=False)]])
        assert ids.shape[1] <= model.config.n_positions
        # The loss averages the len − 1 predictions that follow end-of-text.
        nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
        size += len(text.encode("utf-8"))
    return nll / (math.log(2) * size)


def test_it_trains_for_the_budget_and_measures_real_bits_per_byte(tokenizer, val_texts):
    results = list(
        autoresearch_runs(
            tokenizer=tokenizer,
            train_texts=split_corpus().training,
            val_texts=val_texts,
            budget_s=BUDGET_S,
            runs=BROKEN_EVERY,
        )
    )
    best = None
    for result in results[:-1]:
        assert result.steps > 0 and BUDGET_S <= result.training_seconds < BUDGET_S + 5
        assert result.val_bpb == pytest.approx(reference_bits_per_byte(result.model, tokenizer, val_texts), rel=1e-5)
        # A fresh model predicts uniformly: log2(vocabulary) bits per token; a second of training must beat it.
        assert 0.5 < result.val_bpb < math.log2(len(tokenizer))
        assert result.status == ("keep" if best is None or result.val_bpb < best else "discard")
        best = result.val_bpb if result.status == "keep" else best
        assert f"val_bpb:          {result.val_bpb:.6f}" in result.log
    crash = results[-1]
    assert (crash.status, crash.val_bpb, crash.model) == ("crash", None, None)
    assert "ValueError" in crash.log and "divisible" in crash.log  # raised by transformers itself
    assert len({r.config.commit for r in results}) == len(results)


def test_it_posts_every_run_through_the_run_api(live_server, tokenizer, demo_build, transactional_db):
    admin = UserFactory(username="loop", is_staff=True)
    token = Token.objects.create(user=admin).key
    posted = demo_autoresearch(
        model_dir=demo_build.base,
        base_url=live_server.url,
        token=token,
        log=lambda _line: None,
        runs=BROKEN_EVERY,
        budget_s=BUDGET_S,
        val_texts=VAL_TEXTS,
    )
    experiment = Experiment.objects.get(slug=DEMO_EXPERIMENT)
    runs = list(experiment.runs.order_by("sequence"))
    assert [run.sequence for run in runs] == [answer["sequence"] for answer in posted] == list(range(1, 6))
    assert runs[0].status == ExperimentRun.Status.KEEP
    assert runs[-1].status == ExperimentRun.Status.CRASH and runs[-1].objective_value is None
    assert "divisible" in runs[-1].crash_reason
    for run in runs[:-1]:
        assert 0.5 < run.objective_value < math.log2(len(tokenizer))
        assert run.summary["val_bpb"] == pytest.approx(run.objective_value, abs=1e-6)
        assert run.duration_s and run.memory_gb and run.memory_gb > 0
