"""LoRA / PEFT adapters: a folder with `adapter_config.json` and adapter weights over a base model.

An adapter is scored as lm-evaluation-harness scores `HFLM(pretrained=BASE, peft=ADAPTER)`, but
merged into a copy of the already loaded base (`merge_and_unload`): the forward passes then cost
what the base's cost, and the base is read from disk once for any number of adapters. Adapter
weights are read like any weights (safetensors, or `.bin` with `weights_only=True`), and adapters
that do not fit the base are refused with the reason instead of being half applied.
"""

import copy
import hashlib
import json
from pathlib import Path

from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
from transformers import PreTrainedModel

from evals.scoring.errors import ScoringError, WeightsFormatError, WeightsMismatchError
from evals.scoring.state_dicts import quiet_libraries, read_state_dict

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Adapters whose update folds into the base weights; others (prompt tuning …) change the inputs.
MERGEABLE_PEFT_TYPES = {"LORA", "LOHA", "LOKR", "IA3", "ADALORA"}
_SHOWN_KEYS = 5


def is_adapter(path: Path) -> bool:
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def adapter_config(folder: Path) -> dict:
    try:
        values = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsFormatError(f"cannot read {ADAPTER_CONFIG} in {folder.name}: {error}") from error
    if not isinstance(values, dict):
        raise WeightsFormatError(f"{ADAPTER_CONFIG} in {folder.name} is not a JSON object")
    return values


def adapter_weights_file(folder: Path) -> Path:
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise WeightsFormatError(f"the adapter {folder.name} has no {' or '.join(ADAPTER_WEIGHTS)}")


def adapter_base_dir(folder: Path, base_dir: Path | str | None) -> Path:
    """The base the adapter applies to: the one given, else its `base_model_name_or_path` if local."""
    if base_dir is not None:
        return Path(base_dir)
    named = adapter_config(folder).get("base_model_name_or_path") or ""
    if named and (Path(named) / "config.json").is_file():
        return Path(named)
    raise ScoringError(
        f"{folder.name} is an adapter of {named or 'an unnamed base'!r}: give the base folder "
        "(--base-dir or --family), or save the adapter with a local base_model_name_or_path"
    )


def combined_sha256(adapter_sha256: str, base_sha256: str) -> str:
    """The identity of base + adapter: the same adapter over another base scores differently."""
    return hashlib.sha256(f"adapter:{adapter_sha256}\nbase:{base_sha256}\n".encode()).hexdigest()


def adapter_notes(folder: Path) -> dict[str, str | int]:
    """What the fingerprint records about an adapter."""
    values = adapter_config(folder)
    targets = values.get("target_modules")
    return {
        "adapter_type": str(values.get("peft_type", "")),
        "adapter_rank": int(values.get("r") or 0),
        "adapter_target_modules": ",".join(sorted(targets)) if isinstance(targets, list) else str(targets or ""),
    }


def merge_adapter(base: PreTrainedModel, folder: Path) -> PreTrainedModel:
    """A copy of `base` with the adapter of `folder` merged into its weights; `base` is unchanged."""
    config = _peft_config(folder)
    _check_target_modules(base, config)
    state = read_state_dict(adapter_weights_file(folder))
    with quiet_libraries():
        try:
            adapted = get_peft_model(copy.deepcopy(base), config)
        except ValueError as error:  # peft names the target modules the base lacks
            raise WeightsMismatchError(f"the adapter does not fit the base model: {error}") from error
        try:
            result = set_peft_model_state_dict(adapted, state)
        except RuntimeError as error:  # torch lists every tensor of the wrong shape
            raise WeightsMismatchError(f"the adapter's tensors do not fit the base model: {error}") from error
        _check_all_loaded(adapted, state, result.unexpected_keys)
        return adapted.merge_and_unload()


def _peft_config(folder: Path) -> PeftConfig:
    peft_type = str(adapter_config(folder).get("peft_type", "")).upper()
    if peft_type not in MERGEABLE_PEFT_TYPES:
        raise ScoringError(f"{peft_type or 'this'} adapters are not supported: use a LoRA-style adapter")
    try:
        config = PeftConfig.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as error:
        raise WeightsFormatError(f"{ADAPTER_CONFIG} in {folder.name} is not a valid adapter config: {error}") from error
    config.inference_mode = True
    return config


def _check_target_modules(base: PreTrainedModel, config: PeftConfig) -> None:
    """Each named target module must exist in the base (peft itself only fails when none does)."""
    targets = getattr(config, "target_modules", None)
    if not isinstance(targets, (list, set, tuple)):
        return
    names = [name for name, _ in base.named_modules()]
    absent = sorted(t for t in targets if not any(name == t or name.endswith(f".{t}") for name in names))
    if absent:
        raise WeightsMismatchError(
            f"the adapter targets {', '.join(absent)}, which the {base.config.model_type} base does not have: "
            "it was trained for another architecture"
        )


def _check_all_loaded(adapted, state: dict, unexpected: list[str]) -> None:
    adapter_keys = [name for name in adapted.state_dict() if "lora_" in name or "ia3_" in name]
    problems = []
    if unexpected:
        problems.append(f"tensors the base has no place for: {', '.join(sorted(unexpected)[:_SHOWN_KEYS])}")
    if not state:
        problems.append("no adapter tensors")
    elif len(state) < len(adapter_keys):
        problems.append(f"{len(adapter_keys) - len(state)} of the {len(adapter_keys)} adapter tensors are missing")
    if problems:
        raise WeightsMismatchError(f"the adapter does not fit the base model ({'; '.join(problems)})")
