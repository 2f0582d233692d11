"""Weights to a ready model: Hugging Face folders, or a state dict file over a base folder.

A folder holds config.json, weights (safetensors, or `.bin` read with `weights_only=True`) and
tokenizer files. A single `.safetensors` / `.bin` state dict takes its config and tokenizer from
the family's base folder. Weights that do not fit the config or the tokenizer are refused with a
message instead of being silently re-initialised, as `from_pretrained` would do.
"""

import hashlib
import json
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING
from transformers.utils import logging as transformers_logging

from evals.scoring.errors import (
    ScoringError,
    UnsafeWeightsError,
    VocabularyMismatchError,
    WeightsFormatError,
    WeightsMismatchError,
)
from evals.scoring.hashing import weights_sha256 as compute_weights_sha256

CAUSAL_LM = "causal-lm"
EMBEDDING = "embedding"
_MODEL_CLASSES = {CAUSAL_LM: MODEL_FOR_CAUSAL_LM_MAPPING, EMBEDDING: MODEL_MAPPING}

# Same order as lm-evaluation-harness, so both score with the same context length.
_CONTEXT_LENGTH_ATTRIBUTES = ("n_positions", "max_position_embeddings", "n_ctx")
_FALLBACK_CONTEXT_LENGTH = 2048
_TOKENIZER_UNBOUNDED = 10**20
_SHOWN_KEYS = 5
_REFUSED_PICKLE = "{name} is refused: it is not a plain tensor checkpoint and unpickling it could run code ({error})"


@dataclass(frozen=True)
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: str
    device: torch.device
    dtype: torch.dtype
    max_length: int
    tokenizer_hash: str
    weights_sha256: str


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` means $DRIFTBOARD_DEVICE when set, else CUDA when present, else CPU."""
    if device == "auto":
        device = os.environ.get("DRIFTBOARD_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def dtype_for(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_model(
    weights: Path | str,
    *,
    kind: str = CAUSAL_LM,
    base_dir: Path | str | None = None,
    device: str = "auto",
    weights_sha256: str | None = None,
) -> LoadedModel:
    """Load weights for scoring; `weights_sha256` skips re-hashing when the caller knows it."""
    weights = Path(weights)
    source_dir = _source_dir(weights, base_dir)
    config = _read_config(source_dir)
    tokenizer = _read_tokenizer(source_dir)
    torch_device = resolve_device(device)
    dtype = dtype_for(torch_device)
    model = _read_model(weights, config, kind, tokenizer, dtype)
    _fuse_tanh_gelu(model)
    model.to(torch_device).requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        device=torch_device,
        dtype=dtype,
        max_length=context_length(config, tokenizer),
        tokenizer_hash=tokenizer_sha256(tokenizer),
        weights_sha256=weights_sha256 or compute_weights_sha256(weights),
    )


def context_length(config: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> int:
    text_config = getattr(config, "text_config", None) or config
    for attribute in _CONTEXT_LENGTH_ATTRIBUTES:
        value = getattr(text_config, attribute, None)
        if value is not None:
            return int(value)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit is not None and tokenizer_limit < _TOKENIZER_UNBOUNDED:
        return int(tokenizer_limit)
    return _FALLBACK_CONTEXT_LENGTH


def tokenizer_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's behaviour: its full definition plus its special token ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else tokenizer.get_vocab()
    canonical = json.dumps(
        {
            "definition": definition,
            "bos": tokenizer.bos_token_id,
            "eos": tokenizer.eos_token_id,
            "pad": tokenizer.pad_token_id,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _source_dir(weights: Path, base_dir: Path | str | None) -> Path:
    if not weights.exists():
        raise WeightsFormatError(f"weights not found: {weights}")
    if weights.is_dir():
        return weights
    if base_dir is None:
        raise ScoringError(f"{weights.name} is a bare state dict: a base folder with config and tokenizer is needed")
    return Path(base_dir)


def _read_config(source_dir: Path) -> PretrainedConfig:
    try:
        return AutoConfig.from_pretrained(source_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise WeightsFormatError(f"cannot read config.json in {source_dir}: {error}") from error


def _read_tokenizer(source_dir: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(source_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise WeightsFormatError(f"cannot read the tokenizer in {source_dir}: {error}") from error


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or `.bin` file; a pickle holding anything else is refused."""
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(path)
        except (SafetensorError, OSError) as error:
            raise WeightsFormatError(f"{path.name} is not a valid safetensors file: {error}") from error
    if path.suffix == ".bin":
        return _read_pickled_state_dict(path)
    raise WeightsFormatError(f"unsupported weights file {path.name}: use .safetensors or .bin")


def _read_pickled_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeWeightsError(_REFUSED_PICKLE.format(name=path.name, error=error)) from error
    except Exception as error:  # torch.load fails in many ways on arbitrary bytes
        raise WeightsFormatError(f"{path.name} is not a readable torch file: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(tensor, torch.Tensor) for tensor in state.values()):
        raise WeightsFormatError(f"{path.name} does not hold a state dict of tensors")
    return state


def _read_model(
    weights: Path,
    config: PretrainedConfig,
    kind: str,
    tokenizer: PreTrainedTokenizerBase,
    dtype: torch.dtype,
) -> PreTrainedModel:
    model_class = _model_class(config, kind)
    source = {"state_dict": read_state_dict(weights)} if weights.is_file() else {}
    with _quiet_transformers():
        try:
            model, info = model_class.from_pretrained(
                weights if weights.is_dir() else None,
                config=config,
                dtype=dtype,
                attn_implementation="sdpa",
                local_files_only=True,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                **source,
            )
        except pickle.UnpicklingError as error:
            raise UnsafeWeightsError(_REFUSED_PICKLE.format(name=weights.name, error=error)) from error
        except (OSError, ValueError) as error:
            raise WeightsFormatError(f"cannot read weights {weights.name}: {error}") from error
    _check_vocabulary(model, tokenizer, info["mismatched_keys"])
    _check_tensor_names(model, info)
    return model


def _fuse_tanh_gelu(model: nn.Module) -> None:
    """Swap Python-level tanh-GELUs (GPT-2's `gelu_new`) for torch's fused kernel.

    Same formula, one pass over the MLP activations instead of seven: on CPU the activation
    otherwise costs about as much as the MLP's matrix products.
    """
    unfused = (NewGELUActivation, FastGELUActivation)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, unfused):
                setattr(parent, name, GELUTanh())


def _model_class(config: PretrainedConfig, kind: str) -> type[PreTrainedModel]:
    if kind not in _MODEL_CLASSES:
        raise ScoringError(f"unknown model kind {kind!r}: expected one of {list(_MODEL_CLASSES)}")
    try:
        return _MODEL_CLASSES[kind][type(config)]
    except KeyError:
        raise ScoringError(f"architecture {config.model_type!r} has no {kind} model") from None


def _check_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, mismatched: set[tuple]) -> None:
    embedding = model.get_input_embeddings().weight
    embedding_name = next(name for name, tensor in model.named_parameters() if tensor is embedding)
    rows_expected = embedding.shape[0]
    for name, shape_in_weights, _ in mismatched:
        if name == embedding_name:
            raise VocabularyMismatchError(
                f"the weights have a vocabulary of {shape_in_weights[0]} tokens but the tokenizer "
                f"and config have {len(tokenizer)} and {rows_expected}: "
                "they were trained with another tokenizer"
            )
    if len(tokenizer) > rows_expected:
        raise VocabularyMismatchError(
            f"the tokenizer has {len(tokenizer)} tokens but the weights only {rows_expected} embedding rows"
        )


def _check_tensor_names(model: PreTrainedModel, info: dict) -> None:
    buffers = {name for name, _ in model.named_buffers()}
    problems = {
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(set(info["unexpected_keys"]) - buffers),
        "wrong shape": sorted(
            f"{name} {tuple(found)} instead of {tuple(expected)}" for name, found, expected in info["mismatched_keys"]
        ),
    }
    described = [
        f"{label}: {', '.join(keys[:_SHOWN_KEYS])}{' …' if len(keys) > _SHOWN_KEYS else ''}"
        for label, keys in problems.items()
        if keys
    ]
    if described:
        raise WeightsMismatchError(
            f"the weights do not match the {model.config.model_type} config ({'; '.join(described)})"
        )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading reports and progress bars go to worker logs for every run; keep them out."""
    verbosity = transformers_logging.get_verbosity()
    progress_bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if progress_bars:
            transformers_logging.enable_progress_bar()


class ModelCache:
    """Process-wide LRU of loaded models, so that a worker does not reload weights per run.

    Keyed by weights sha256 together with base folder, kind and device. Capacity comes from
    $DRIFTBOARD_MODEL_CACHE_SIZE (default 2: a candidate and its baseline).
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity or int(os.environ.get("DRIFTBOARD_MODEL_CACHE_SIZE", "2"))
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        weights: Path | str,
        *,
        kind: str = CAUSAL_LM,
        base_dir: Path | str | None = None,
        device: str = "auto",
        weights_sha256: str | None = None,
    ) -> LoadedModel:
        sha256 = weights_sha256 or compute_weights_sha256(weights)
        base = str(Path(base_dir).resolve()) if base_dir is not None else ""
        key = (sha256, base, kind, str(resolve_device(device)))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = load_model(weights, kind=kind, base_dir=base_dir, device=device, weights_sha256=sha256)
            self._models[key] = loaded
            self._evict()
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._release_gpu_memory()

    def __len__(self) -> int:
        return len(self._models)

    def _evict(self) -> None:
        evicted = False
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)
            evicted = True
        if evicted:
            self._release_gpu_memory()

    @staticmethod
    def _release_gpu_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODEL_CACHE = ModelCache()
