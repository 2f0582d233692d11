"""lm-evaluation-harness run in-process: the reference the causal scorer must reproduce."""

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM


def lm_eval_nll(
    model_dir: Path,
    texts: list[str],
    *,
    max_length: int | None = None,
    batch_size: int = 4,
    peft: Path | None = None,
    add_bos_token: bool | None = None,
    dtype: str = "auto",
) -> np.ndarray:
    """Per-text NLL (nats) from the harness's `loglikelihood_rolling`.

    `add_bos_token=False` for tokenizers that put BOS in front of every text: the harness would
    otherwise score that BOS (after its own BOS prefix) as a token of the text. `dtype="auto"` is
    the checkpoint's own dtype; Driftboard scores a bf16 checkpoint in fp32 on CPU.
    """
    with warnings.catch_warnings():  # peft's deprecation notices about transformers, not ours
        warnings.simplefilter("ignore", FutureWarning)
        harness = HFLM(
            pretrained=str(model_dir),
            peft=str(peft) if peft else None,
            device="cpu",
            batch_size=batch_size,
            max_length=max_length,
            add_bos_token=add_bos_token,
            dtype=dtype,
        )
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=index)
        for index, text in enumerate(texts)
    ]
    with contextlib.redirect_stderr(io.StringIO()):  # the harness draws progress bars per batch
        loglikelihoods = harness.loglikelihood_rolling(requests, disable_tqdm=True)
    return -np.asarray(loglikelihoods, dtype=np.float64)
