"""Causal scoring throughput and parity: this engine vs lm-evaluation-harness vs a naive loop.

All three score the same texts with the same GPT-2 in one process: `loglikelihood_rolling` of
lm-evaluation-harness (the reference), a plain per-window transformers loop, and
`evals.scoring.causal.score_causal`. The model is built on the spot (random weights, a byte-level
BPE trained on standard-library docstrings), and the texts are 20 to 2,000 tokens long, so that
long ones span several context windows.

    python bench/scoring.py                  # CPU, ~14M-parameter GPT-2, context 1024
    python bench/scoring.py --max-tokens 200 # short texts only (20-200 tokens)
    python bench/scoring.py --device cuda    # GPU, ~100M-parameter GPT-2 in bf16

Every run also reports MFU: the forward FLOPs of the workload over the matrix-multiply rate
measured in the same process (fp32 on CPU, bf16 on GPU), and the ceiling that rate puts on any
engine's speed-up over the reference.
"""

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from evals.scoring.causal import prefix_token_id, score_causal  # noqa: E402
from evals.scoring.loading import load_model  # noqa: E402
from evals.scoring.windows import rolling_windows  # noqa: E402
from tests.scoring.tiny_lm import stdlib_docstrings, train_tokenizer, write_gpt2_folder  # noqa: E402

MODEL_SHAPES = {
    "cpu": {"n_embd": 384, "n_layer": 6, "n_head": 6},
    "cuda": {"n_embd": 768, "n_layer": 12, "n_head": 12},
}
CONTEXT = 1024
VOCABULARY = 8192


@dataclass
class Run:
    name: str
    nll: np.ndarray
    seconds: float


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_model(Path(scratch), device)
        texts = make_texts(folder, args.texts, seed=args.seed, shortest=args.min_tokens, longest=args.max_tokens)
        engines = make_engines(folder, device, args)
        runs = take_turns(engines, texts, args.turns)
        report(runs, folder, texts, device)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument(
        "--turns", type=int, default=5, help="engines take turns on this many slices of the texts (fair under load)"
    )
    parser.add_argument(
        "--lm-eval-batch-sizes",
        type=int,
        nargs="+",
        help="lm-eval runs to compare with; the first is the reference (default: 1 8 on CPU, 32 on GPU)",
    )
    parser.add_argument("--token-budget", type=int, help="this engine's padded tokens per forward pass")
    parser.add_argument("--min-tokens", type=int, default=20, help="shortest text, in tokens")
    parser.add_argument("--max-tokens", type=int, default=2000, help="longest text, in tokens")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build_model(scratch: Path, device: torch.device) -> Path:
    tokenizer = train_tokenizer(stdlib_docstrings(1_000_000), vocab_size=VOCABULARY)
    folder = scratch / "gpt2"
    shape = MODEL_SHAPES[device.type]
    return write_gpt2_folder(folder, tokenizer, n_positions=CONTEXT, initializer_range=0.02, **shape)


def make_texts(folder: Path, count: int, *, seed: int, shortest: int, longest: int) -> list[str]:
    """Slices of the docstring corpus with token counts log-uniform in [shortest, longest]."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    corpus_ids = tokenizer("\n\n".join(stdlib_docstrings(2_000_000)))["input_ids"]
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(math.log(shortest), math.log(longest), count)).astype(int)
    starts = rng.integers(0, len(corpus_ids) - longest, count)
    return [tokenizer.decode(corpus_ids[start : start + length]) for start, length in zip(starts, lengths, strict=True)]


def make_engines(folder: Path, device: torch.device, args) -> dict[str, Callable[[list[str]], np.ndarray]]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batch_sizes = args.lm_eval_batch_sizes or ([32] if device.type == "cuda" else [1, 8])
    naive_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    naive_tokenizer = AutoTokenizer.from_pretrained(folder)
    ours = load_model(folder, device=str(device))
    engines = {
        f"lm-eval (batch {size})": lm_eval_engine(
            HFLM(pretrained=str(folder), device=str(device), batch_size=size, dtype=dtype)
        )
        for size in batch_sizes
    }
    engines["naive loop"] = lambda texts: naive_nll(naive_model, naive_tokenizer, texts)
    engines["this engine"] = lambda texts: score_causal(ours, texts, token_budget=args.token_budget).nll
    return engines


def lm_eval_engine(harness: HFLM) -> Callable[[list[str]], np.ndarray]:
    return lambda texts: lm_eval_nll(harness, texts)


def lm_eval_nll(harness: HFLM, texts: list[str]) -> np.ndarray:
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=index)
        for index, text in enumerate(texts)
    ]
    with contextlib.redirect_stderr(io.StringIO()):  # progress bars drawn per batch
        return -np.asarray(harness.loglikelihood_rolling(requests, disable_tqdm=True))


def naive_nll(model, tokenizer, texts: list[str]) -> np.ndarray:
    """One forward pass per window, full logits and log-softmax: the straightforward loop."""
    prefix = prefix_token_id(tokenizer)
    results = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([prefix, *tokenizer(text, add_special_tokens=False)["input_ids"]], device=model.device)
            total = 0.0
            for window in rolling_windows(len(ids) - 1, CONTEXT):
                inputs = ids[window.start : window.start + window.length]
                targets = ids[window.start + 1 : window.start + window.length + 1][-window.scored :]
                log_probs = torch.log_softmax(model(inputs[None]).logits[0, -window.scored :].float(), dim=-1)
                total -= log_probs.gather(1, targets[:, None]).sum().item()
            results.append(total)
    return np.asarray(results)


def take_turns(engines: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], turns: int) -> dict[str, Run]:
    """Time each engine on consecutive slices of the texts, alternating engines slice by slice.

    Machines shared with other work change speed over minutes; alternating gives every engine
    the same conditions, where running one engine after the other would not.
    """
    runs = {name: Run(name, np.empty(0), 0.0) for name in engines}
    names = list(engines)
    for turn, part in enumerate(np.array_split(np.arange(len(texts)), turns)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            synchronize()
            started = time.perf_counter()
            nll = engines[name]([texts[i] for i in part])
            synchronize()
            runs[name].seconds += time.perf_counter() - started
            runs[name].nll = np.concatenate([runs[name].nll, nll])
        print(f"  turn {turn + 1}/{turns} done", file=sys.stderr)
    return runs


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def report(runs: dict[str, Run], folder: Path, texts: list[str], device: torch.device) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])
    n_bytes = np.array([len(text.encode("utf-8")) for text in texts])
    model = AutoModelForCausalLM.from_pretrained(folder)
    reference = next(iter(runs.values()))
    print(describe_workload(model, tokens, device))
    print(f"{'engine':<22}{'seconds':>9}{'tokens/s':>11}{'vs lm-eval':>12}{'bits/byte':>12}{'max rel diff':>14}")
    for run in runs.values():
        bpb = run.nll.sum() / (math.log(2) * n_bytes.sum())
        relative = np.max(np.abs(run.nll - reference.nll) / np.abs(reference.nll))
        print(
            f"{run.name:<22}{run.seconds:>9.1f}{tokens.sum() / run.seconds:>11.0f}"
            f"{reference.seconds / run.seconds:>11.2f}x{bpb:>12.6f}{relative:>14.2e}"
        )
    print_mfu(runs, model, tokens, device)


def describe_workload(model, tokens: np.ndarray, device: torch.device) -> str:
    windows = sum(len(rolling_windows(int(n), CONTEXT)) for n in tokens)
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return (
        f"GPT-2 {parameters:.1f}M parameters, context {CONTEXT}, on {device.type}{threads}; "
        f"{len(tokens)} texts, {tokens.sum()} tokens ({tokens.min()}-{tokens.max()} per text), {windows} windows"
    )


def print_mfu(runs: dict[str, Run], model, tokens: np.ndarray, device: torch.device) -> None:
    """Model FLOPs utilisation: forward FLOPs 2N + 4·layers·d_model·T per token over a measured matmul rate.

    N counts the weights that take part in matrix products: everything but the position
    embeddings (the token embedding is the output head). T is the length of the token's window.
    The rate is bf16 on GPU and fp32 on CPU, the precision each device scores in.
    """
    config = model.config
    n_matmul = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    flops = 0.0
    for n in tokens:
        for window in rolling_windows(int(n), CONTEXT):
            flops += window.length * (2 * n_matmul + 4 * config.n_layer * config.n_embd * window.length)
    if device.type == "cuda":
        peak, precision = measured_cuda_matmul_flops(), "bf16"
    else:
        peak, precision = measured_cpu_matmul_flops(config.n_embd), "fp32"
    reference = next(iter(runs.values()))
    print(
        f"{precision} matmul rate measured: {peak / 1e9:,.0f} GFLOP/s; workload {flops / tokens.sum() / 1e6:.1f} MFLOP/token"
    )
    for run in runs.values():
        print(f"{run.name:<22} MFU {flops / run.seconds / peak:6.1%}")
    print(f"ceiling: any engine at 100% MFU would be {reference.seconds / (flops / peak):.2f}x {reference.name}")


def measured_cuda_matmul_flops(size: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def measured_cpu_matmul_flops(width: int, rows: int = 2048, repeats: int = 40) -> float:
    """The best fp32 rate over the model's own product shapes (attention and MLP projections)."""
    best = 0.0
    for inner, outer in ((width, 3 * width), (width, 4 * width), (4 * width, width)):
        a, b = torch.randn(rows, inner), torch.randn(inner, outer)
        a @ b
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * rows * inner * outer * repeats / (time.perf_counter() - started))
    return best


if __name__ == "__main__":
    main()
