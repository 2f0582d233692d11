"""Small real weight files for registration tests."""

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel


def tiny_gpt2(seed: int = 0, n_embd: int = 8) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=n_embd, n_layer=1, n_head=2)
    return GPT2LMHeadModel(config)


def tiny_state_dict(seed: int = 1, n_embd: int = 8) -> dict[str, torch.Tensor]:
    state = {k: v.contiguous() for k, v in tiny_gpt2(seed, n_embd).state_dict().items()}
    state.pop("lm_head.weight", None)
    return state


def safetensors_bytes(seed: int = 1, n_embd: int = 8) -> bytes:
    path = Path(tempfile.mkdtemp()) / "w.safetensors"
    save_file(tiny_state_dict(seed, n_embd), path)
    return path.read_bytes()


def bin_bytes(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    torch.save(tiny_state_dict(seed), buffer)
    return buffer.getvalue()


def folder_archive(folder: Path, kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as bundle:
            for path in sorted(folder.iterdir()):
                bundle.write(path, f"model/{path.name}")
    else:
        with tarfile.open(fileobj=buffer, mode="w") as bundle:
            bundle.add(folder, arcname="model")
    return buffer.getvalue()


def stored_objects(root: Path) -> list[Path]:
    objects = root / "objects"
    return sorted(p for p in objects.rglob("*") if p.is_file()) if objects.exists() else []


def leftover_staging(root: Path) -> list[Path]:
    staging = root / "tmp"
    return list(staging.iterdir()) if staging.exists() else []
