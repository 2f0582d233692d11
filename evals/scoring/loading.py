"""Weights to a ready model: Hugging Face folders, state dict files and adapters over a base.

A folder holds config.json, weights (safetensors, single or sharded with an index, or `.bin` read
with `weights_only=True`) and tokenizer files. A single `.safetensors` / `.bin` state dict takes its
config and tokenizer from the family's base folder; so does a LoRA adapter folder (`adapters.py`).
Weights that do not fit the config are refused with a message instead of being silently
re-initialised, as `from_pretrained` would do. Weights load in the worker's dtype (a bf16 / fp16
checkpoint is converted on CPU) and the memory guard runs before any tensor is read. What loading
changed or noticed is kept in `notes`, which the fingerprint records.
"""

import dataclasses
import hashlib
import json
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

from evals.scoring import adapters, memory
from evals.scoring.batching import default_token_budget
from evals.scoring.errors import (
    ScoringError,
    UnsafeWeightsError,
    VocabularyMismatchError,
    WeightsFormatError,
    WeightsMismatchError,
)
from evals.scoring.hashing import weights_sha256 as compute_weights_sha256
from evals.scoring.state_dicts import REFUSED_PICKLE, quiet_libraries, read_state_dict

CAUSAL_LM = "causal-lm"
EMBEDDING = "embedding"
_MODEL_CLASSES = {CAUSAL_LM: MODEL_FOR_CAUSAL_LM_MAPPING, EMBEDDING: MODEL_MAPPING}

# Same order as lm-evaluation-harness, so both score with the same context length.
_CONTEXT_LENGTH_ATTRIBUTES = ("n_positions", "max_position_embeddings", "n_ctx")
_FALLBACK_CONTEXT_LENGTH = 2048
_TOKENIZER_UNBOUNDED = 10**20
_SHOWN_KEYS = 5
_TORCH_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


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
    # Rows of the input embedding: a token id at or past it cannot be scored.
    embedding_rows: int | None = None
    # Tokens per forward pass sized to the free GPU memory; None keeps the device's default.
    token_budget: int | None = None
    notes: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFacts:
    """What a loaded model's results and answers are keyed by, without its weights: a judge worker
    keys its judgements and finds the answers a scoring worker generated from these alone.

    It stands in for a `LoadedModel` wherever only keys are computed (`model` is None: anything that
    would run the model refuses).
    """

    kind: str
    device: torch.device
    dtype: torch.dtype
    max_length: int
    tokenizer_hash: str
    weights_sha256: str
    chat_template_sha256: str
    notes: Mapping[str, str | int] = field(default_factory=dict)
    model: None = None
    token_budget: int | None = None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.max_length,
            "tokenizer_hash": self.tokenizer_hash,
            "weights_sha256": self.weights_sha256,
            "chat_template_sha256": self.chat_template_sha256,
            "notes": dict(self.notes),
        }

    @classmethod
    def from_dict(cls, facts: Mapping) -> "ModelFacts":
        dtype = getattr(torch, str(facts["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ScoringError(f"unknown dtype {facts['dtype']!r} in the model facts")
        return cls(
            kind=str(facts["kind"]),
            device=torch.device(str(facts["device"])),
            dtype=dtype,
            max_length=int(facts["max_length"]),
            tokenizer_hash=str(facts["tokenizer_hash"]),
            weights_sha256=str(facts["weights_sha256"]),
            chat_template_sha256=str(facts["chat_template_sha256"]),
            notes=dict(facts.get("notes") or {}),
        )


def model_facts(lm: "LoadedModel | ModelFacts") -> ModelFacts:
    if isinstance(lm, ModelFacts):
        return lm
    return ModelFacts(
        kind=lm.kind,
        device=lm.device,
        dtype=lm.dtype,
        max_length=lm.max_length,
        tokenizer_hash=lm.tokenizer_hash,
        weights_sha256=lm.weights_sha256,
        chat_template_sha256=tokenizer_chat_template_sha256(lm.tokenizer),
        notes=dict(lm.notes),
    )


def tokenizer_chat_template_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the tokenizer's chat template (of the empty string when it has none)."""
    template = tokenizer.chat_template or ""
    if not isinstance(template, str):
        template = json.dumps(template, sort_keys=True)
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


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
    """Load weights for scoring; `weights_sha256` skips re-hashing when the caller knows it.

    An adapter folder loads its base (`base_dir`, else its local `base_model_name_or_path`) and
    merges into it; `weights_sha256` is then the adapter's own hash.
    """
    weights = Path(weights)
    if adapters.is_adapter(weights):
        base = load_model(adapters.adapter_base_dir(weights, base_dir), kind=kind, device=device)
        return with_adapter(base, weights, adapter_sha256=weights_sha256)
    source_dir = _source_dir(weights, base_dir)
    config = _read_config(source_dir)
    tokenizer = _read_tokenizer(source_dir)
    torch_device = resolve_device(device)
    dtype = dtype_for(torch_device)
    max_length = context_length(config, tokenizer)
    files = weight_files(weights)
    _guard_memory(files, config, torch_device, dtype, max_length, copies=1 if weights.is_dir() else 2)
    model = _read_model(weights, config, kind, dtype)
    _fuse_tanh_gelu(model)
    _skip_padding_advice(model)
    model.to(torch_device).requires_grad_(False)
    rows = model.get_input_embeddings().weight.shape[0]
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        device=torch_device,
        dtype=dtype,
        max_length=max_length,
        tokenizer_hash=tokenizer_sha256(tokenizer),
        weights_sha256=weights_sha256 or compute_weights_sha256(weights),
        embedding_rows=rows,
        token_budget=_token_budget(config, torch_device, dtype, max_length),
        notes={**_dtype_notes(files, dtype), **_vocabulary_notes(tokenizer, rows)},
    )


def with_adapter(base: LoadedModel, folder: Path, *, adapter_sha256: str | None = None) -> LoadedModel:
    """The base with the adapter merged into a copy of its weights; the base stays as it was."""
    copy_bytes = sum(tensor.numel() * tensor.element_size() for tensor in base.model.parameters())
    memory.check_fits(copy_bytes, base.device)
    merged = adapters.merge_adapter(base.model, folder).requires_grad_(False)
    adapter_sha256 = adapter_sha256 or compute_weights_sha256(folder)
    return dataclasses.replace(
        base,
        model=merged,
        weights_sha256=adapters.combined_sha256(adapter_sha256, base.weights_sha256),
        notes={
            **base.notes,
            **adapters.adapter_notes(folder),
            "adapter_sha256": adapter_sha256,
            "base_sha256": base.weights_sha256,
        },
    )


def weight_files(weights: Path) -> list[Path]:
    """The tensor files of a weights file or folder (every shard of a sharded checkpoint)."""
    if weights.is_file():
        return [weights]
    return sorted(weights.glob("*.safetensors")) or sorted(weights.glob("*.bin"))


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
        with quiet_libraries():
            return AutoConfig.from_pretrained(source_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise WeightsFormatError(f"cannot read config.json in {source_dir}: {error}") from error


def _read_tokenizer(source_dir: Path) -> PreTrainedTokenizerBase:
    try:
        with quiet_libraries():
            return AutoTokenizer.from_pretrained(source_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise WeightsFormatError(f"cannot read the tokenizer in {source_dir}: {error}") from error


def _guard_memory(
    files: list[Path], config: PretrainedConfig, device: torch.device, dtype: torch.dtype, context: int, copies: int
) -> None:
    """Fail before reading a tensor when the weights cannot fit (a bare file is read, then copied).

    On a GPU the token budget shrinks to what is free after loading, so only its floor must fit.
    """
    tokens = memory.GPU_BUDGET_FLOOR if device.type == "cuda" else default_token_budget(device)
    needed = memory.estimate(files, config.get_text_config().to_dict(), dtype, context=context, tokens=tokens)
    memory.check_fits(copies * needed.weights_bytes + needed.activation_bytes, device)


def _token_budget(config: PretrainedConfig, device: torch.device, dtype: torch.dtype, context: int) -> int | None:
    if device.type != "cuda":
        return None
    per_token = memory.activation_bytes_per_token(config.get_text_config().to_dict(), dtype, context)
    return memory.gpu_token_budget(per_token, memory.free_bytes(device))


def _dtype_notes(files: list[Path], dtype: torch.dtype) -> dict[str, str]:
    stored = memory.floating_dtype(files)
    loaded = str(dtype).removeprefix("torch.")
    name = _TORCH_DTYPE_NAMES.get(stored or "", "")
    if not name or name == loaded:
        return {}
    return {"checkpoint_dtype": name, "dtype_conversion": f"{name} -> {loaded}"}


def _vocabulary_notes(tokenizer: PreTrainedTokenizerBase, rows: int) -> dict[str, int]:
    """A tokenizer may define a few (special) ids past the embedding; only using them is an error."""
    beyond = len(tokenizer) - rows
    return {"tokenizer_ids_beyond_embedding": beyond} if beyond > 0 else {}


def _read_model(weights: Path, config: PretrainedConfig, kind: str, dtype: torch.dtype) -> PreTrainedModel:
    model_class = _model_class(config, kind)
    source = {"state_dict": read_state_dict(weights)} if weights.is_file() else {}
    with quiet_libraries():
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
            raise UnsafeWeightsError(REFUSED_PICKLE.format(name=weights.name, error=error)) from error
        except (OSError, ValueError) as error:
            raise WeightsFormatError(f"cannot read weights {weights.name}: {error}") from error
    _check_embedding(model, info["mismatched_keys"])
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


def _skip_padding_advice(model: nn.Module) -> None:
    """Silence transformers' "pass an attention_mask" advice for this model.

    The scorers right-pad windows and never read a padded position's output, so the advice, which
    transformers gives whenever the pad id (often BOS/EOS) starts or ends a row, never applies.
    """
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.warn_if_padding_and_no_attention_mask = _padding_is_never_read


def _padding_is_never_read(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    return None


def _model_class(config: PretrainedConfig, kind: str) -> type[PreTrainedModel]:
    if kind not in _MODEL_CLASSES:
        raise ScoringError(f"unknown model kind {kind!r}: expected one of {list(_MODEL_CLASSES)}")
    try:
        return _MODEL_CLASSES[kind][type(config)]
    except KeyError:
        raise ScoringError(f"architecture {config.model_type!r} has no {kind} model") from None


def _check_embedding(model: PreTrainedModel, mismatched: set[tuple]) -> None:
    embedding = model.get_input_embeddings().weight
    embedding_name = next(name for name, tensor in model.named_parameters() if tensor is embedding)
    for name, shape_in_weights, _ in mismatched:
        if name == embedding_name:
            raise VocabularyMismatchError(
                f"the weights have a vocabulary of {shape_in_weights[0]} tokens but the config has "
                f"{embedding.shape[0]}: they were trained with another tokenizer"
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


class ModelCache:
    """Process-wide LRU of loaded models, so that a worker does not reload weights per run.

    Keyed by weights sha256 together with base folder, kind and device. Adapters are merged into
    a copy of their base, which stays loaded on its own: scoring ten adapters of one base reads
    the base from disk once. Capacity (of each: models, bases) comes from
    $DRIFTBOARD_MODEL_CACHE_SIZE (default 2: a candidate and its baseline), counted per kind: an
    answer family's embedder stays loaded beside them, never evicting a causal LM nor evicted by one.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity or int(os.environ.get("DRIFTBOARD_MODEL_CACHE_SIZE", "2"))
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._bases: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads_from_disk = 0

    def get(
        self,
        weights: Path | str,
        *,
        kind: str = CAUSAL_LM,
        base_dir: Path | str | None = None,
        device: str = "auto",
        weights_sha256: str | None = None,
    ) -> LoadedModel:
        weights = Path(weights)
        sha256 = weights_sha256 or compute_weights_sha256(weights)
        if adapters.is_adapter(weights):
            base_dir = adapters.adapter_base_dir(weights, base_dir)
        base = str(Path(base_dir).resolve()) if base_dir is not None else ""
        key = (sha256, base, kind, str(resolve_device(device)))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if adapters.is_adapter(weights):
                loaded = with_adapter(self._base(Path(base), kind, device), weights, adapter_sha256=sha256)
            else:
                loaded = self._load(weights, kind=kind, base_dir=base_dir, device=device, weights_sha256=sha256)
            self._models[key] = loaded
            self._evict(self._models, kind)
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._bases.clear()
            self._release_gpu_memory()

    def __len__(self) -> int:
        return len(self._models)

    def _base(self, folder: Path, kind: str, device: str) -> LoadedModel:
        key = (str(folder), kind, str(resolve_device(device)))
        if key in self._bases:
            self._bases.move_to_end(key)
        else:
            self._bases[key] = self._load(folder, kind=kind, base_dir=None, device=device, weights_sha256=None)
            self._evict(self._bases, kind)
        return self._bases[key]

    def _load(self, weights: Path, **options) -> LoadedModel:
        self.loads_from_disk += 1
        return load_model(weights, **options)

    def _evict(self, models: OrderedDict, kind: str) -> None:
        """Drop the least recently used models of `kind` beyond the capacity (a key's kind is its next to last part)."""
        same_kind = [key for key in models if key[-2] == kind]
        for key in same_kind[: max(0, len(same_kind) - self.capacity)]:
            del models[key]
        if len(same_kind) > self.capacity:
            self._release_gpu_memory()

    @staticmethod
    def _release_gpu_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODEL_CACHE = ModelCache()
