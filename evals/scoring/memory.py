"""The memory guard: will these weights fit on this worker, before a single tensor is read?

The estimate comes from the safetensors headers (element count × the bytes of the dtype the worker
loads in) plus the activations of one forward pass at the token budget. Weights that cannot fit
fail at once with the numbers, instead of an out-of-memory kill that the broker redelivers forever.
The run stays retryable on a bigger worker: `size_class` names the scoring queue (one per memory
size class) whose workers can hold it. On a GPU the token budget grows with the memory left free.
"""

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from evals.scoring.errors import ScoringError, WeightsFormatError

GIB = 1024**3
# Scoring queues by the memory of their workers: `scoring-16g` … `scoring-160g`.
SIZE_CLASSES_GIB = (16, 40, 80, 160)
_DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_FLOATING = {"F64", "F32", "F16", "BF16"}
_MAX_HEADER_BYTES = 100 * 1024 * 1024
# Logits of one chunk in fp32 and their log-sum-exp temporaries (see causal.py).
_LOGIT_CHUNK_BYTES = 3 * 4 * (1 << 24)
# Allocator slack and the CUDA context, kept free when sizing the GPU token budget.
_HEADROOM = 0.2
GPU_BUDGET_FLOOR = 2048
_GPU_BUDGET_CEILING = 1 << 20


class InsufficientMemoryError(ScoringError):
    """The weights and activations need more memory than this worker has free."""

    def __init__(self, needed_bytes: int, free_bytes: int, device: str) -> None:
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        self.size_class = size_class(needed_bytes)
        super().__init__(
            f"needs ~{needed_bytes / GIB:.2f} GiB, this worker has {free_bytes / GIB:.2f} GiB free ({device}); "
            f"retry it on a {self.size_class} worker"
        )


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes


def size_class(needed_bytes: int) -> str:
    """The smallest scoring queue whose workers hold `needed_bytes`, or the largest one."""
    fitting = next((gib for gib in SIZE_CLASSES_GIB if needed_bytes <= gib * GIB), SIZE_CLASSES_GIB[-1])
    return f"scoring-{fitting}g"


def weights_bytes(files: list[Path], dtype: torch.dtype) -> int:
    """Bytes the tensors of `files` take once loaded with floating tensors cast to `dtype`."""
    target = torch.empty((), dtype=dtype).element_size()
    total = 0
    for path in files:
        if path.suffix != ".safetensors":
            total += path.stat().st_size
            continue
        for entry in _safetensors_entries(path):
            elements = _numel(entry["shape"])
            total += elements * (target if entry["dtype"] in _FLOATING else _DTYPE_BYTES.get(entry["dtype"], 1))
    return total


def activation_bytes_per_token(config_values: dict, dtype: torch.dtype, context: int) -> int:
    """Peak activation bytes of one token in a forward pass (hidden states, MLP, attention scores)."""
    hidden = int(config_values.get("hidden_size") or config_values.get("n_embd") or 0)
    intermediate = int(config_values.get("intermediate_size") or config_values.get("n_inner") or 4 * hidden)
    heads = int(config_values.get("num_attention_heads") or config_values.get("n_head") or 1)
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * (4 * hidden + intermediate) * element + heads * context * 4


def estimate(
    files: list[Path], config_values: dict, dtype: torch.dtype, *, context: int, tokens: int
) -> MemoryEstimate:
    per_token = activation_bytes_per_token(config_values, dtype, context)
    return MemoryEstimate(weights_bytes(files, dtype), tokens * per_token + _LOGIT_CHUNK_BYTES)


def floating_dtype(files: list[Path]) -> str | None:
    """The safetensors dtype (`BF16`, `F32` …) holding most floating elements, None for `.bin` files."""
    counts: dict[str, int] = {}
    for path in files:
        if path.suffix == ".safetensors":
            for entry in _safetensors_entries(path):
                if entry["dtype"] in _FLOATING:
                    counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + _numel(entry["shape"])
    return max(counts, key=counts.__getitem__) if counts else None


def free_bytes(device: torch.device) -> int:
    """Free memory of the device, capped by $DRIFTBOARD_WORKER_MEMORY_GIB when the worker sets one."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = psutil.virtual_memory().available
    cap = os.environ.get("DRIFTBOARD_WORKER_MEMORY_GIB", "").strip()
    return min(free, int(float(cap) * GIB)) if cap else free


def check_fits(needed_bytes: int, device: torch.device) -> None:
    available = free_bytes(device)
    if needed_bytes > available:
        raise InsufficientMemoryError(needed_bytes, available, device.type)


def gpu_token_budget(per_token_bytes: int, free: int) -> int:
    """Tokens per forward pass that the free GPU memory holds, keeping headroom; a multiple of 256."""
    tokens = int(free * (1 - _HEADROOM) - _LOGIT_CHUNK_BYTES) // max(1, per_token_bytes)
    return max(GPU_BUDGET_FLOOR, min(_GPU_BUDGET_CEILING, tokens // 256 * 256))


def _safetensors_entries(path: Path) -> list[dict]:
    with path.open("rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise WeightsFormatError(f"{path.name} is not a valid safetensors file: too short")
        (length,) = struct.unpack("<Q", raw_length)
        if length > _MAX_HEADER_BYTES:
            raise WeightsFormatError(f"{path.name} is not a valid safetensors file: its header claims {length} bytes")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WeightsFormatError(f"{path.name} is not a valid safetensors file: {error}") from error
    return [entry for name, entry in header.items() if name != "__metadata__" and isinstance(entry, dict)]


def _numel(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return total
