from pathlib import Path

import pytest

from registry.services import family_create
from tests.registry.weights import tiny_gpt2


@pytest.fixture(scope="session")
def base_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base") / "tiny-gpt2"
    tiny_gpt2().save_pretrained(folder)
    return folder


@pytest.fixture
def family(db, base_folder):
    return family_create(slug="tiny", kind="causal-lm", base_path=str(base_folder))
