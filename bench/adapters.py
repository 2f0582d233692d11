"""Scoring ten LoRA adapters of one base: Driftboard (base loaded once) vs lm-evaluation-harness.

Driftboard scores all ten adapters in one process through its model cache: the base is read from
disk once and each adapter is merged into a copy of it. lm-evaluation-harness is run as a user runs
it, once per adapter: a fresh process that loads `HFLM(pretrained=BASE, peft=ADAPTER)` and runs
`loglikelihood_rolling` on the same texts. Both columns are whole-process wall times (interpreter
start, imports, loading and scoring). The base (a GPT-2 with a byte-level BPE trained on
standard-library docstrings) and the adapters (rank 8 on attention and MLP inputs) are built on the
spot. A second table times one forward pass of an adapter applied by peft vs merged into the base.

    python bench/adapters.py                 # CPU
    python bench/adapters.py --device cuda   # GPU, bf16 (the harness runs in the checkpoint's fp32)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402

from evals.scoring import adapters  # noqa: E402
from evals.scoring.loading import load_model  # noqa: E402
from evals.scoring.state_dicts import quiet_libraries  # noqa: E402
from tests.scoring.tiny_lm import stdlib_docstrings, train_tokenizer, write_gpt2_folder, write_lora_adapter  # noqa: E402

MODEL_SHAPES = {"cpu": {"n_embd": 256, "n_layer": 4, "n_head": 4}, "cuda": {"n_embd": 768, "n_layer": 12, "n_head": 12}}
CONTEXT = 512
ADAPTERS = 10
RANK = 8

DRIFTBOARD = """
import json, sys, time
from evals.scoring.causal import score_causal
from evals.scoring.loading import ModelCache
base, texts, device, folders = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4:]
cache = ModelCache(capacity=2)
nll = [score_causal(cache.get(f, base_dir=base, device=device), texts).nll.tolist() for f in folders]
print(json.dumps({"nll": nll, "base_loads": cache.loads_from_disk}))
"""

HARNESS = """
import contextlib, io, json, sys
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
base, texts, device, folder = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
with contextlib.redirect_stderr(io.StringIO()):
    lm = HFLM(pretrained=base, peft=folder, device=device, batch_size=16)
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    print(json.dumps({"nll": [-x for x in lm.loglikelihood_rolling(requests, disable_tqdm=True)]}))
"""


def run_script(script: str, *args: str) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1]), seconds


def forward_seconds(model, input_ids: torch.Tensor) -> float:
    with torch.inference_mode():
        if input_ids.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(input_ids=input_ids, use_cache=False)
        if input_ids.is_cuda:
            torch.cuda.synchronize()
    return time.perf_counter() - started


def applied_vs_merged(base_dir: Path, folder: Path, device: str, rounds: int = 9) -> tuple[float, float, float]:
    """Fastest of `rounds` forward passes of each, taking turns so that both see the same machine."""
    lm = load_model(base_dir, device=device)
    started = time.perf_counter()
    merged = adapters.merge_adapter(lm.model, folder)
    merge_seconds = time.perf_counter() - started
    with quiet_libraries():
        applied = PeftModel.from_pretrained(load_model(base_dir, device=device).model, folder).eval()
    input_ids = torch.randint(0, lm.model.config.vocab_size, (4, CONTEXT), device=lm.device)
    times: dict[str, list[float]] = {"applied": [], "merged": []}
    for _ in range(rounds):
        times["applied"].append(forward_seconds(applied, input_ids))
        times["merged"].append(forward_seconds(merged, input_ids))
    return min(times["applied"]), min(times["merged"]), merge_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--texts", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    tokenizer = train_tokenizer(stdlib_docstrings(300_000), vocab_size=4096)
    base_dir = write_gpt2_folder(work / "base", tokenizer, n_positions=CONTEXT, **MODEL_SHAPES[args.device])
    targets = ["c_attn", "c_fc"]
    folders = [
        write_lora_adapter(
            work / f"adapter-{i}", base_dir, target_modules=targets, rank=RANK, seed=i, fan_in_fan_out=True
        )
        for i in range(ADAPTERS)
    ]
    texts = [t for t in stdlib_docstrings(400_000)[-2000:] if len(t) > 200][: args.texts]
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    common = (str(base_dir), str(texts_file), args.device)

    ours, ours_seconds = run_script(DRIFTBOARD, *common, *map(str, folders))
    harness_seconds, differences = 0.0, []
    for index, folder in enumerate(folders):
        reference, seconds = run_script(HARNESS, *common, str(folder))
        harness_seconds += seconds
        differences.append(np.max(np.abs(np.array(ours["nll"][index]) / np.array(reference["nll"]) - 1)))

    parameters = sum(p.numel() for p in load_model(base_dir, device="cpu").model.parameters())
    print(
        f"\n{ADAPTERS} LoRA adapters (rank {RANK}, {', '.join(targets)}) of a {parameters / 1e6:.1f}M-parameter GPT-2, "
        f"{len(texts)} texts, context {CONTEXT}, {args.device}, {torch.get_num_threads()} threads"
    )
    print(f"\n| {'engine':<46} | {'base loads':>10} | {'seconds':>8} | {'ratio':>6} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 10}|{'-' * 8}|")
    print(
        f"| {'lm-evaluation-harness, one process per adapter':<46} | {ADAPTERS:>10} | {harness_seconds:>8.1f} | {1:>6.2f} |"
    )
    print(
        f"| {'Driftboard, one process, base cached':<46} | {ours['base_loads']:>10} | {ours_seconds:>8.1f} | "
        f"{harness_seconds / ours_seconds:>6.2f} |"
    )
    print(f"\nlargest relative difference of a per-text NLL from the harness: {max(differences):.2e}")

    applied, merged, merge_seconds = applied_vs_merged(base_dir, folders[0], args.device)
    print(f"\n| {'fastest forward pass, 4 × ' + str(CONTEXT) + ' tokens':<38} | {'ms':>8} | {'ratio':>6} |")
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 8}|")
    print(f"| {'adapter applied by peft':<38} | {1000 * applied:>8.1f} | {1:>6.2f} |")
    print(f"| {'adapter merged into the base':<38} | {1000 * merged:>8.1f} | {applied / merged:>6.2f} |")
    print(f"\nmerging one adapter into a copy of the base: {1000 * merge_seconds:.0f} ms")


if __name__ == "__main__":
    main()
