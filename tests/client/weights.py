"""A small, valid safetensors file (numpy only), enough for the registration health check."""

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_safetensors(path: Path, seed: int = 0, size: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    save_file(
        {
            "wte.weight": rng.normal(size=(size, 8)).astype(np.float32),
            "ln_f.bias": rng.normal(size=8).astype(np.float32),
        },
        str(path),
    )
    return path
