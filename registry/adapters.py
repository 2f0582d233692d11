"""Health checks of the folders that are more than one weights file: LoRA / PEFT adapters and
sharded checkpoints.

An adapter folder (`adapter_config.json` + `adapter_model.safetensors`, or `.bin` opened with
`weights_only=True`) is checked against the family's base from headers alone: its target modules
exist in the base, each low-rank pair has the configured rank and multiplies out to the shape of the
base weight it adapts, and it was trained for the base's architecture. A sharded checkpoint's
`model.safetensors.index.json` must list exactly the shards present and the tensors they hold.
"""

import json
import re
from pathlib import Path

from registry import weights_check
from registry.weights_check import HealthCheckError, TensorShapes

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
SHARD_INDEX = "model.safetensors.index.json"
_ADAPTER_PREFIX = "base_model.model."
_SAVED_PREFIXES = ("transformer.", "model.")
_LOW_RANK = re.compile(r"^(?P<module>.+)\.lora_(?:embedding_)?(?P<part>A|B)(?:\.weight)?$")
_SHOWN = 5


def is_adapter_folder(folder: Path) -> bool:
    return folder.is_dir() and (folder / ADAPTER_CONFIG).is_file()


def check_folder(folder: Path, base_folder: Path | None) -> dict:
    """The health check of a folder: an adapter, a sharded checkpoint or a plain model folder."""
    if is_adapter_folder(folder):
        return check_adapter(folder, base_folder)
    if (folder / SHARD_INDEX).is_file():
        shards = check_shard_index(folder)
        return {**weights_check.check(folder, base_folder), "shards": shards}
    return weights_check.check(folder, base_folder)


def adapter_tags(summary: dict) -> dict[str, object]:
    """Telemetry tags of an adapter artifact (none for other weights)."""
    adapter = summary.get("adapter")
    if not adapter:
        return {}
    return {
        "base_model_name_or_path": adapter["base_model_name_or_path"],
        "adapter_rank": adapter["rank"],
        "adapter_target_modules": ",".join(adapter["target_modules"]),
    }


def check_adapter(folder: Path, base_folder: Path | None) -> dict:
    if base_folder is None:
        raise HealthCheckError("An adapter applies to a base model: give the family a base folder (base_path) first.")
    config = _read_json(folder / ADAPTER_CONFIG)
    rank, targets = _rank_and_targets(config)
    shapes = _adapter_shapes(folder)
    base_config = _read_json(base_folder / "config.json")
    _check_architecture(config, base_config)
    base_modules = _module_shapes(weights_check.folder_shapes(base_folder))
    _check_targets(targets, base_modules, base_config)
    _check_low_rank_shapes(shapes, base_modules, config, rank)
    return {
        "tensors": len(shapes),
        "parameters": sum(_numel(shape) for shape in shapes.values()),
        "adapter": {
            "type": str(config.get("peft_type", "")),
            "base_model_name_or_path": str(config.get("base_model_name_or_path") or ""),
            "rank": rank,
            "target_modules": sorted(targets) if isinstance(targets, list) else [targets],
        },
    }


def check_shard_index(folder: Path) -> int:
    """The index and the shards agree; returns the number of shards."""
    index = _read_json(folder / SHARD_INDEX)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise HealthCheckError(f"{SHARD_INDEX} has no weight_map of tensor names to shard files.")
    listed = set(weight_map.values())
    escaping = sorted(name for name in listed if Path(name).name != name)
    if escaping:
        raise HealthCheckError(f"{SHARD_INDEX} names shards outside the folder: {', '.join(escaping[:_SHOWN])}.")
    present = {path.name for path in folder.glob("*.safetensors")}
    if listed - present:
        raise HealthCheckError(
            f"Shards listed in {SHARD_INDEX} are missing: {', '.join(sorted(listed - present)[:_SHOWN])}."
        )
    if present - listed:
        raise HealthCheckError(f"Shards not listed in {SHARD_INDEX}: {', '.join(sorted(present - listed)[:_SHOWN])}.")
    for shard in sorted(listed):
        held = set(weights_check.safetensors_header(folder / shard))
        expected = {tensor for tensor, name in weight_map.items() if name == shard}
        if held != expected:
            differing = sorted(held ^ expected)
            raise HealthCheckError(
                f"{shard} does not hold the tensors {SHARD_INDEX} assigns to it: {', '.join(differing[:_SHOWN])}."
            )
    return len(listed)


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HealthCheckError(f"{path.name} cannot be read ({exc.strerror}).") from exc
    except (ValueError, RecursionError) as exc:
        raise HealthCheckError(f"{path.name} is not valid JSON ({exc}).") from exc
    if not isinstance(values, dict):
        raise HealthCheckError(f"{path.name} is not a JSON object.")
    return values


def _rank_and_targets(config: dict) -> tuple[int, list[str] | str]:
    rank, targets = config.get("r"), config.get("target_modules")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise HealthCheckError(f"{ADAPTER_CONFIG}: the rank r must be a positive integer, not {ascii(rank)[:50]}.")
    if isinstance(targets, str) or (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
        return rank, targets
    raise HealthCheckError(f"{ADAPTER_CONFIG}: target_modules must name the modules the adapter changes.")


def _adapter_shapes(folder: Path) -> TensorShapes:
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            shapes = weights_check.weights_shapes(folder / name)
            return {key.removeprefix(_ADAPTER_PREFIX): shape for key, shape in shapes.items()}
    raise HealthCheckError(f"The adapter folder has no {' or '.join(ADAPTER_WEIGHTS)}.")


def _check_architecture(config: dict, base_config: dict) -> None:
    """The adapter's recorded base class must be one of the base's architectures."""
    trained_on = (config.get("auto_mapping") or {}).get("base_model_class")
    architectures = base_config.get("architectures") or []
    if trained_on and architectures and trained_on not in architectures:
        raise HealthCheckError(
            f"Wrong base architecture: the adapter was trained on a {trained_on}, "
            f"the family's base is a {', '.join(architectures)}."
        )


def _module_shapes(base_shapes: TensorShapes) -> dict[str, list[int]]:
    """Weight shape of each module of the base, by module path without the saved prefix."""
    return {
        _canonical(name.removesuffix(".weight")): shape
        for name, shape in base_shapes.items()
        if name.endswith(".weight")
    }


def _canonical(module: str) -> str:
    for prefix in _SAVED_PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix) :]
    return module


def _check_targets(targets: list[str] | str, base_modules: dict[str, list[int]], base_config: dict) -> None:
    names = list(base_modules)
    if isinstance(targets, str):
        absent = [] if any(re.fullmatch(targets, name) for name in names) else [targets]
    else:
        absent = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names)]
    if absent:
        examples = sorted({name.rsplit(".", 1)[-1] for name in names if len(base_modules[name]) == 2})
        raise HealthCheckError(
            f"Wrong target modules: {', '.join(absent)} match no module of the family's "
            f"{base_config.get('model_type', 'base')} base (its layers are named {', '.join(examples[:8])})."
        )


def _check_low_rank_shapes(shapes: TensorShapes, base_modules: dict[str, list[int]], config: dict, rank: int) -> None:
    pairs: dict[str, dict[str, list[int]]] = {}
    for name, shape in shapes.items():
        matched = _LOW_RANK.match(name)
        if matched:
            pairs.setdefault(_canonical(matched["module"]), {})[matched["part"]] = shape
    if not pairs:
        raise HealthCheckError("The adapter holds no low-rank (lora_A / lora_B) tensors.")
    rank_pattern = config.get("rank_pattern") or {}
    problems = []
    for module, pair in sorted(pairs.items()):
        if module not in base_modules:
            raise HealthCheckError(
                f"Wrong base architecture: the adapter changes {module}, which the family's base does not have."
            )
        expected_rank = next((r for key, r in rank_pattern.items() if re.search(key, module)), rank)
        problem = _pair_problem(pair, base_modules[module], expected_rank)
        if problem:
            problems.append(f"{module}: {problem}")
    if problems:
        raise HealthCheckError(f"Wrong rank shapes: {'; '.join(problems[:_SHOWN])}.")


def _pair_problem(pair: dict[str, list[int]], base_shape: list[int], rank: int) -> str:
    if set(pair) != {"A", "B"}:
        return "lora_A or lora_B is missing"
    a, b = pair["A"], pair["B"]
    if len(a) != 2 or len(b) != 2:
        return f"lora_A {a} and lora_B {b} are not matrices"
    if a[0] != rank or b[1] != rank:
        return f"lora_A {a} and lora_B {b} have rank {a[0]}/{b[1]}, the config says r={rank}"
    # B·A is [out, in]; Conv1D layers (GPT-2) and embeddings store their weight as [in, out].
    if [b[0], a[1]] not in (base_shape, base_shape[::-1]):
        return f"lora_B·lora_A is {[b[0], a[1]]} but the base weight is {base_shape}"
    return ""


def _numel(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
