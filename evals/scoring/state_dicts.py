"""Reading tensors from weight files, and keeping library chatter out of the output while loading.

`.safetensors` files are read as such; a `.bin` is unpickled only with `weights_only=True`, which
refuses any pickle that carries code. Shared by whole models, sharded folders and adapters.
"""

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from transformers.utils import logging as transformers_logging

from evals.scoring.errors import UnsafeWeightsError, WeightsFormatError

REFUSED_PICKLE = "{name} is refused: it is not a plain tensor checkpoint and unpickling it could run code ({error})"


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
        raise UnsafeWeightsError(REFUSED_PICKLE.format(name=path.name, error=error)) from error
    except Exception as error:  # torch.load fails in many ways on arbitrary bytes
        raise WeightsFormatError(f"{path.name} is not a readable torch file: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(tensor, torch.Tensor) for tensor in state.values()):
        raise WeightsFormatError(f"{path.name} does not hold a state dict of tensors")
    return state


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Loading reports, deprecation notices and progress bars would reach every run's output."""
    verbosity = transformers_logging.get_verbosity()
    progress_bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if progress_bars:
            transformers_logging.enable_progress_bar()
