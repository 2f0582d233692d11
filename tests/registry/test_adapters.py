"""Registering LoRA adapters and sharded checkpoints through the API: checked against the family's
base from headers alone, refused with a 400 that names the mismatch, nothing stored on refusal."""

import json
import shutil

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from evals.scoring.hashing import weights_sha256
from registry.models import Artifact
from registry.services import family_create
from tests.registry.test_registration import COMMIT, upload
from tests.registry.weights import folder_archive, leftover_staging, stored_objects, tiny_gpt2
from tests.scoring.tiny_lm import write_lora_adapter


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, base_folder):
    return write_lora_adapter(tmp_path_factory.mktemp("adapter") / "lora", base_folder, target_modules=["c_attn"])


def edited_adapter(adapter_dir, destination, **config_changes):
    shutil.copytree(adapter_dir, destination)
    config = json.loads((destination / "adapter_config.json").read_text())
    (destination / "adapter_config.json").write_text(json.dumps({**config, **config_changes}))
    return destination


def register_path(client, family, path):
    return client.post(
        "/api/v1/artifacts/", {"family": family.slug, "commit": COMMIT, "path": str(path)}, format="json"
    )


def assert_refused(response, session_artifact_root, before, message):
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert Artifact.objects.count() == 0
    assert stored_objects(session_artifact_root) == before
    assert leftover_staging(session_artifact_root) == []


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_it_registers_an_uploaded_adapter_with_its_tags(api_client, family, adapter_dir, kind, base_folder):
    response = upload(api_client, family.slug, folder_archive(adapter_dir, kind), f"lora.{kind}")

    assert response.status_code == 202, response.json()
    artifact = Artifact.objects.get(pk=response.json()["id"])
    assert artifact.format == Artifact.Format.HF_DIR
    assert artifact.sha256 == weights_sha256(adapter_dir)
    assert artifact.health["adapter"]["rank"] == 4
    tags = dict(artifact.tags.values_list("key", "value"))
    assert tags["base_model_name_or_path"] == str(base_folder)
    assert tags["adapter_rank"] == "4" and tags["adapter_target_modules"] == "c_attn"


def test_it_registers_an_adapter_folder_under_an_import_root(api_client, family, adapter_dir, import_root):
    folder = import_root / "lora-from-path"
    shutil.copytree(adapter_dir, folder, dirs_exist_ok=True)

    response = register_path(api_client, family, folder)

    assert response.status_code == 202, response.json()
    assert Artifact.objects.get().tags.get(key="adapter_rank").value == "4"


def test_it_refuses_wrong_target_modules(api_client, family, adapter_dir, tmp_path, session_artifact_root):
    before = stored_objects(session_artifact_root)
    wrong = edited_adapter(adapter_dir, tmp_path / "wrong-targets", target_modules=["q_proj", "v_proj"])

    response = upload(api_client, family.slug, folder_archive(wrong, "tar"), "lora.tar")

    assert_refused(response, session_artifact_root, before, "Wrong target modules: q_proj, v_proj match no module")
    assert "c_attn" in response.json()["detail"]


def test_it_refuses_wrong_rank_shapes(api_client, family, adapter_dir, tmp_path, session_artifact_root):
    before = stored_objects(session_artifact_root)
    wrong_rank = edited_adapter(adapter_dir, tmp_path / "wrong-rank", r=8)

    response = upload(api_client, family.slug, folder_archive(wrong_rank, "zip"), "lora.zip")

    assert_refused(response, session_artifact_root, before, "Wrong rank shapes: h.0.attn.c_attn")
    assert "the config says r=8" in response.json()["detail"]


def test_it_refuses_an_adapter_of_a_wider_model(api_client, family, tmp_path, session_artifact_root):
    before = stored_objects(session_artifact_root)
    wider = tmp_path / "wider-base"
    tiny_gpt2(n_embd=16).save_pretrained(wider)
    adapter = write_lora_adapter(tmp_path / "wider-lora", wider, target_modules=["c_attn"])

    response = upload(api_client, family.slug, folder_archive(adapter, "tar"), "lora.tar")

    assert_refused(response, session_artifact_root, before, "lora_B·lora_A is [48, 16] but the base weight is [8, 24]")


def test_it_refuses_an_adapter_trained_on_another_base(api_client, family, tmp_path, session_artifact_root):
    before = stored_objects(session_artifact_root)
    torch.manual_seed(0)
    llama = tmp_path / "llama-base"
    config = LlamaConfig(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    LlamaForCausalLM(config).save_pretrained(llama)
    adapter = write_lora_adapter(tmp_path / "llama-lora", llama, target_modules=["q_proj", "v_proj"])

    response = upload(api_client, family.slug, folder_archive(adapter, "tar"), "lora.tar")

    assert_refused(
        response,
        session_artifact_root,
        before,
        "Wrong base architecture: the adapter was trained on a LlamaForCausalLM",
    )


def test_it_refuses_an_adapter_for_a_family_without_a_base(api_client, adapter_dir, session_artifact_root):
    bare = family_create(slug="bare", kind="causal-lm")
    before = stored_objects(session_artifact_root)

    response = upload(api_client, bare.slug, folder_archive(adapter_dir, "tar"), "lora.tar")

    assert_refused(response, session_artifact_root, before, "give the family a base folder")


@pytest.fixture
def sharded_dir(tmp_path, base_folder):
    folder = tmp_path / "sharded"
    tiny_gpt2(seed=3).save_pretrained(folder, max_shard_size="2KB")
    return folder


def test_it_registers_a_sharded_checkpoint_as_one_artifact(api_client, family, sharded_dir, import_root):
    shards = len(list(sharded_dir.glob("*.safetensors")))
    folder = import_root / "sharded"
    shutil.copytree(sharded_dir, folder, dirs_exist_ok=True)

    response = register_path(api_client, family, folder)

    assert response.status_code == 202, response.json()
    artifact = Artifact.objects.get()
    assert shards > 3 and artifact.health["shards"] == shards
    assert artifact.sha256 == weights_sha256(sharded_dir)


def test_every_shard_is_part_of_the_identity(sharded_dir, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(sharded_dir, changed)
    last = sorted(changed.glob("*.safetensors"))[-1]
    data = bytearray(last.read_bytes())
    data[-1] ^= 1
    last.write_bytes(bytes(data))

    assert weights_sha256(changed) != weights_sha256(sharded_dir)


def test_it_refuses_a_sharded_checkpoint_missing_a_shard(api_client, family, sharded_dir, session_artifact_root):
    before = stored_objects(session_artifact_root)
    missing = sorted(sharded_dir.glob("*.safetensors"))[1]
    missing.unlink()

    response = upload(api_client, family.slug, folder_archive(sharded_dir, "tar"), "sharded.tar")

    assert_refused(response, session_artifact_root, before, f"are missing: {missing.name}")
