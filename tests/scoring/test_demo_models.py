"""The demo model family: real training on the shipped corpus with the fast "test" preset.

``demo_build`` (tests/conftest.py) builds it once per session for every test that needs it.
"""

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from evals.scoring import demo_models as demo
from evals.scoring.causal import score_causal
from evals.scoring.demo_models import DemoBuild, build_demo_models
from evals.scoring.loading import load_model

MODEL_NAMES = ("base", "improved", "drifted")


def silent(_line: str) -> None:
    pass


def load(path: Path) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval()


def read_golden(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def bits_per_byte(path: Path, texts: list[str]) -> float:
    """Σ NLL / (ln 2 · Σ UTF-8 bytes); every token predicted, the first from end-of-text."""
    tokenizer, model = load(path)
    context = model.config.n_positions
    encoded = tokenizer(texts, truncation=True, max_length=context)["input_ids"]
    rows = [[tokenizer.eos_token_id, *ids] for ids in encoded]
    scored_bytes = sum(len(tokenizer.decode(row[1:]).encode("utf-8")) for row in rows)
    width = max(map(len, rows))
    ids = torch.tensor([row + [tokenizer.eos_token_id] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1]).logits
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return (nll * mask[:, 1:]).sum().item() / (math.log(2) * scored_bytes)


@pytest.fixture(scope="session")
def golden_bits_per_byte(demo_build: DemoBuild) -> dict[str, float]:
    texts = [row["text"] for row in read_golden(demo_build.golden)]
    return {name: bits_per_byte(getattr(demo_build, name), texts) for name in MODEL_NAMES}


def test_it_writes_folders_that_load_offline_and_score_from_end_of_text(demo_build: DemoBuild) -> None:
    for name in MODEL_NAMES:
        folder = getattr(demo_build, name)
        tokenizer, model = load(folder)
        assert (folder / "model.safetensors").is_file()
        assert tokenizer.bos_token_id is not None
        assert tokenizer.bos_token_id == tokenizer.eos_token_id == model.config.bos_token_id
        ids = tokenizer("Return the number of items, ünïcode included.")["input_ids"]
        assert tokenizer.bos_token_id not in ids, "scorers add the prefix token themselves"
        assert tokenizer.decode(ids) == "Return the number of items, ünïcode included."
        assert model.config.vocab_size == len(tokenizer)


def test_it_starts_from_chance_and_drops_the_training_loss(demo_build: DemoBuild) -> None:
    tokenizer, _model = load(demo_build.base)
    base = demo_build.losses["base"]
    assert base[0] == pytest.approx(math.log(len(tokenizer)), rel=0.05), "untrained model predicts near uniform"
    final = {name: sum(losses[-10:]) / 10 for name, losses in demo_build.losses.items()}
    assert final["base"] < 0.8 * base[0]
    assert final["improved"] < final["base"]
    assert final["drifted"] < demo_build.losses["drifted"][0], "the drift text is learnt"


def test_it_holds_golden_samples_out_of_training(demo_build: DemoBuild) -> None:
    rows = read_golden(demo_build.golden)
    assert 200 <= len(rows) <= 600
    assert all(
        set(row) in ({"id", "text", "category"}, {"id", "text", "category", "prompt", "reference"}) for row in rows
    )
    prompted = [row for row in rows if "prompt" in row]
    assert len(rows) // 3 <= len(prompted) <= len(rows) // 2
    for row in prompted:  # the prompt is how the passage starts, the reference how it goes on
        assert " ".join(row["text"].split()).startswith(f"{row['prompt']} {row['reference']}")
    assert len({row["id"] for row in rows}) == len(rows)
    assert {row["category"] for row in rows} == set(demo.TRAINING_SOURCES)
    assert all(50 <= len(row["text"]) <= 600 for row in rows)
    corpus = demo.split_corpus()
    trained_text = "\n".join(corpus.training + corpus.drift)
    assert not [row["id"] for row in rows if row["text"] in trained_text]


def test_it_orders_golden_bits_per_byte_improved_base_drifted(golden_bits_per_byte: dict[str, float]) -> None:
    bpb = golden_bits_per_byte
    assert bpb["improved"] < bpb["base"] < bpb["drifted"]
    assert bpb["drifted"] > 1.05 * bpb["base"], "drift must be clearly visible"


def test_it_builds_identical_files_from_the_same_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = replace(demo.PRESETS["test"], base_steps=3, improved_steps=3, drift_steps=3, warmup_steps=1)
    monkeypatch.setitem(demo.PRESETS, "tiny", tiny)
    first, again, other_seed = (
        build_demo_models(tmp_path / folder, preset="tiny", seed=seed, log=silent)
        for folder, seed in (("first", 1), ("again", 1), ("other", 2))
    )
    assert first.losses == again.losses
    for name in MODEL_NAMES:
        weights = (getattr(build, name) / "model.safetensors" for build in (first, again, other_seed))
        first_bytes, again_bytes, other_bytes = (path.read_bytes() for path in weights)
        assert first_bytes == again_bytes
        assert first_bytes != other_bytes
    assert first.golden.read_bytes() == other_seed.golden.read_bytes(), "the golden set ignores the seed"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_scoring_texts_longer_than_the_context_logs_no_tokenizer_warning(demo_build: DemoBuild) -> None:
    lm = load_model(demo_build.base, device="cpu")
    text = " ".join(row["text"] for row in read_golden(demo_build.golden)[:20])
    lm.tokenizer.deprecation_warnings.clear()  # it warns once per tokenizer
    library = logging.getLogger("transformers")
    collect, level = Collect(), library.level
    library.addHandler(collect)
    library.setLevel(logging.WARNING)
    try:
        scores = score_causal(lm, [text])
    finally:
        library.removeHandler(collect)
        library.setLevel(level)

    assert scores.tokens[0] > lm.tokenizer.model_max_length  # the length the tokenizer warns about
    assert not [m for m in collect.messages if "sequence length is longer" in m]
