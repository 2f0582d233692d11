"""The registration health check: the weights open, and their tensors match the family.

A safetensors file is checked from its header alone (no tensor is loaded). A `.bin` state dict is
opened only with `torch.load(weights_only=True)`, which refuses any pickle that carries code.
"""

import json
import pickle
import struct
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"}
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Weights that transformers ties or rebuilds, so a checkpoint may leave them out.
OPTIONAL_TENSOR_SUFFIXES = ("lm_head.weight", ".attn.bias", ".attn.masked_bias", "position_ids")


class HealthCheckError(ValueError):
    """The weights are unusable; the message names the problem."""


TensorShapes = dict[str, list[int]]


def safetensors_header(path: Path) -> TensorShapes:
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise HealthCheckError(f"{path.name}: too short to be a safetensors file.")
        (header_length,) = struct.unpack("<Q", raw_length)
        if header_length > min(MAX_HEADER_BYTES, size - 8):
            raise HealthCheckError(
                f"{path.name}: the safetensors header claims {header_length} bytes, more than the file holds."
            )
        try:
            header = json.loads(handle.read(header_length))
        except (ValueError, RecursionError) as exc:  # undecodable, malformed, too deeply nested, huge integers
            raise HealthCheckError(f"{path.name}: the safetensors header is not valid JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise HealthCheckError(f"{path.name}: the safetensors header is not an object.")
    _validate_metadata(path.name, header.get("__metadata__", {}))
    return _validate_entries(path.name, header, data_size=size - 8 - header_length)


def _validate_metadata(name: str, metadata: object) -> None:
    """safetensors (and so the worker) accepts only a string-to-string `__metadata__`."""
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HealthCheckError(f"{name}: the header's __metadata__ must map strings to strings.")


def _valid_name(tensor: str) -> bool:
    try:
        tensor.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return False
    return True


def _validate_entries(name: str, header: dict, data_size: int) -> TensorShapes:
    shapes: TensorShapes = {}
    end_max = 0
    spans: list[tuple[int, int, str]] = []
    for tensor, entry in header.items():
        if tensor == "__metadata__":
            continue
        if not _valid_name(tensor):
            raise HealthCheckError(f"{name}: tensor {ascii(tensor)} has a name that is not valid UTF-8.")
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise HealthCheckError(f"{name}: tensor {tensor!r} has a malformed header entry.") from exc
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
            raise HealthCheckError(f"{name}: tensor {tensor!r} has an unknown dtype {ascii(dtype)[:100]}.")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise HealthCheckError(f"{name}: tensor {tensor!r} has an invalid shape {ascii(shape)[:100]}.")
        expected = _numel(shape) * DTYPE_BYTES.get(dtype, 1)
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_size):
            raise HealthCheckError(f"{name}: tensor {tensor!r} points beyond the end of the file (truncated?).")
        if dtype in DTYPE_BYTES and end - start != expected:
            raise HealthCheckError(f"{name}: tensor {tensor!r} has {end - start} bytes but its shape needs {expected}.")
        shapes[tensor] = list(shape)
        end_max = max(end_max, end)
        spans.append((start, end, tensor))
    if not shapes:
        raise HealthCheckError(f"{name}: the file holds no tensors.")
    _require_disjoint(name, spans)
    if end_max != data_size:
        raise HealthCheckError(f"{name}: the header describes {end_max} bytes of data but the file has {data_size}.")
    return shapes


def _require_disjoint(name: str, spans: list[tuple[int, int, str]]) -> None:
    """Tensors must lie one after another in the data buffer, as safetensors itself requires."""
    position = 0
    for start, end, tensor in sorted(spans):
        if start != position:
            problem = "overlaps another tensor" if start < position else "leaves a gap before it"
            raise HealthCheckError(f"{name}: tensor {tensor!r} {problem} (data_offsets [{start}, {end}]).")
        position = end


def _numel(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def bin_state_dict_shapes(path: Path) -> TensorShapes:

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise HealthCheckError(
            f"{path.name}: refused — the pickle holds more than tensors (it could run code), "
            "so it was not loaded. Save the weights with safetensors."
        ) from exc
    except Exception as exc:  # torch raises several types for a corrupt zip/pickle
        raise HealthCheckError(f"{path.name}: not a readable PyTorch state dict ({exc}).") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HealthCheckError(f"{path.name}: expected a state dict of tensors.")
    return {name: list(tensor.shape) for name, tensor in state.items()}


def folder_shapes(folder: Path) -> TensorShapes:
    """Tensor shapes of a Hugging Face model folder, read from its weight files' headers."""
    config = folder / "config.json"
    if not config.is_file():
        raise HealthCheckError("The model folder has no config.json.")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise HealthCheckError(f"config.json is not valid JSON ({exc}).") from exc
    shapes: TensorShapes = {}
    weight_files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weight_files:
        raise HealthCheckError("The model folder has no .safetensors or .bin weights.")
    for weights in weight_files:
        shapes.update(weights_shapes(weights))
    return shapes


def weights_shapes(path: Path) -> TensorShapes:
    if path.is_dir():
        return folder_shapes(path)
    if path.suffix == ".safetensors":
        return safetensors_header(path)
    if path.suffix in {".bin", ".pt", ".pth"}:
        return bin_state_dict_shapes(path)
    raise HealthCheckError(
        f"Unsupported weights format {path.suffix!r}: use .safetensors, .bin, or a .tar/.zip folder."
    )


def compare_with_base(shapes: TensorShapes, base: TensorShapes) -> None:
    """Every tensor of the base must be present with its shape; nothing unexpected may be added."""
    canonical = {_strip_prefix(k): v for k, v in shapes.items()}
    expected = {_strip_prefix(k): v for k, v in base.items()}
    missing = [k for k in expected if k not in canonical and not k.endswith(OPTIONAL_TENSOR_SUFFIXES)]
    unexpected = [k for k in canonical if k not in expected and not k.endswith(OPTIONAL_TENSOR_SUFFIXES)]
    wrong = [
        f"{k}: {canonical[k]} instead of {expected[k]}"
        for k in canonical
        if k in expected and canonical[k] != expected[k]
    ]
    problems = []
    if wrong:
        problems.append("wrong shapes — " + "; ".join(wrong[:5]))
    if missing:
        problems.append("missing tensors — " + ", ".join(missing[:5]))
    if unexpected:
        problems.append("unexpected tensors — " + ", ".join(unexpected[:5]))
    if problems:
        raise HealthCheckError("The weights do not match the family's base architecture: " + "; ".join(problems) + ".")


def _strip_prefix(name: str) -> str:
    """`transformer.h.0…` and `h.0…` name the same tensor depending on how the model was saved."""
    for prefix in ("transformer.", "model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def check(path: Path, base_folder: Path | None) -> dict:
    """Run the health check; return a summary stored on the artifact."""
    shapes = weights_shapes(path)
    if base_folder is not None:
        compare_with_base(shapes, folder_shapes(base_folder))
    return {"tensors": len(shapes), "parameters": sum(_numel(s) for s in shapes.values())}
