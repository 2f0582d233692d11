"""An adapter artifact, registered through the API, scored by the worker's engine: merged into the
family's base, which the worker's model cache loads once for any number of adapters."""

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evals.models import EvalRun
from evals.scoring import adapters
from evals.scoring.causal import score_causal
from evals.scoring.hashing import weights_sha256
from evals.scoring.loading import MODEL_CACHE, load_model
from evals.scoring.scorers import METRICS
from evals.scoring.summary import metric_value
from evals.services import engine
from evals.services.pipeline import family_create
from registry.models import Artifact
from tests.factories import DatasetFactory
from tests.registry.weights import folder_archive
from tests.scoring.tiny_lm import stdlib_docstrings, train_tokenizer, write_gpt2_folder, write_lora_adapter

SAMPLES = 12


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    tokenizer = train_tokenizer(stdlib_docstrings(50_000), vocab_size=600)
    return write_gpt2_folder(
        tmp_path_factory.mktemp("lora-base"), tokenizer, n_positions=32, n_embd=32, n_layer=2, n_head=2
    )


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, base_dir):
    root = tmp_path_factory.mktemp("lora-adapters")
    return [write_lora_adapter(root / f"a{seed}", base_dir, target_modules=["c_attn"], seed=seed) for seed in (1, 2)]


def register(api_client, family, folder, commit: str) -> Artifact:
    weights = SimpleUploadedFile("lora.tar", folder_archive(folder, "tar"))
    response = api_client.post(
        "/api/v1/artifacts/", {"family": family.slug, "commit": commit, "weights": weights}, format="multipart"
    )
    assert response.status_code == 202, response.json()
    return Artifact.objects.get(pk=response.json()["id"])


def test_it_scores_adapters_over_one_loaded_base(api_client, base_dir, adapter_dirs):
    family = family_create(slug="lora", kind="causal-lm", base_path=str(base_dir), datasets=["golden"])
    dataset = DatasetFactory(name="golden", samples=SAMPLES)
    texts = list(dataset.samples.order_by("position").values_list("text", flat=True))
    MODEL_CACHE.clear()
    loads_before = MODEL_CACHE.loads_from_disk

    for number, folder in enumerate(adapter_dirs):
        artifact = register(api_client, family, folder, commit=f"{number}" * 40)
        run = EvalRun.objects.get(artifact=artifact)
        result = engine.score_full_run(run=run, progress=lambda done: None)

        _, numerators, denominators = result.arrays["bits_per_byte"]
        expected = score_causal(load_model(folder, base_dir=base_dir, device="cpu"), texts)
        assert metric_value(METRICS["bits_per_byte"], numerators, denominators) == pytest.approx(
            expected.bits_per_byte, rel=1e-6
        )
        fingerprint = result.fingerprints["bits_per_byte"]
        assert fingerprint["weights_sha256"] == adapters.combined_sha256(artifact.sha256, weights_sha256(base_dir))
        assert fingerprint["adapter_sha256"] == artifact.sha256
        assert fingerprint["base_sha256"] == weights_sha256(base_dir)
        assert fingerprint["adapter_rank"] == 4
    assert MODEL_CACHE.loads_from_disk - loads_before == 1
    assert np.all(denominators > 0)
