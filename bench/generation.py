"""Generation throughput and parity: this engine vs lm-evaluation-harness vs a naive loop.

All engines answer the same prompts with the same causal LM and `max_new_tokens` in one process,
taking turns on slices of the prompts: lm-evaluation-harness's `HFLM.generate_until` at batch 1
(the reference) and at larger batch sizes, a naive per-sample `model.generate` loop, and
`evals.scoring.generation.generate`. It prints answer tokens per second (the same token count,
that of the greedy answers, over each engine's time), the ratio to the harness's faster setting,
how many answers are identical to batch-1 greedy decoding (and, for each that is not, the gap
between the two most likely tokens where it departs), the cache (a second run through
`generate_cached`: zero forward passes) and peak memory.

    python bench/generation.py                          # CPU: the demo model, built on the spot
    python bench/generation.py --model var/demo/base    # an existing causal LM folder
    python bench/generation.py --device cuda            # GPU: ~100M-parameter GPT-2, bf16
    python bench/generation.py --threads 1              # every engine single-threaded
    python bench/generation.py --drafts                 # also: candidates drafted from the model's answers
    python bench/generation.py --few-shot               # only: 5-shot prompts, with and without prefix sharing
    python bench/generation.py --mixed-lengths          # only: mixed lengths, with and without refilling

With `--drafts`, candidates made of the model's weights plus 1 %, 5 % and 30 % Gaussian noise answer
the same prompts, plainly and drafted from the model's own (the baseline's) answers, taking turns:
acceptance rate, forward passes, answer tokens per second, answers equal to plain greedy decoding,
and the speed-up over the harness's fastest setting (on the base model, the same size).

With `--few-shot`, every prompt is the same five worked examples (question and answer, docstring
slices: a common prefix of 400+ tokens) and a question of 20 – 40 tokens; with `--mixed-lengths`,
docstring slices of 8 – 200 tokens. Answers end at a stop string (`--stop`, a blank line unless
given; `--stop` alone: none), EOS or `max_new_tokens`. The engine answers them with the technique
and without it, taking turns: forward passes, prompt tokens fed, answer tokens per second, the
speed-up, and answers equal to those without it and to a per-prompt `model.generate` loop. The demo model's context (256) cannot
hold a 5-shot prompt: `--few-shot` tiles its position table to 1,024 positions (answers past
position 256 are not the trained model's, the work is the same).

Peak memory is the resident set size above the process's size before each engine ran (CPU), or
torch's peak allocation (GPU).
"""

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from evals.scoring.demo_models import build_demo_models  # noqa: E402
from evals.scoring.generation import (  # noqa: E402
    Draft,
    DraftStats,
    GenerationSettings,
    InMemoryGenerationStore,
    cut_at_stop,
    generate,
    generate_cached,
    prompt_token_ids,
)
from evals.scoring.loading import load_model  # noqa: E402
from tests.scoring.tiny_lm import stdlib_docstrings, train_tokenizer, write_gpt2_folder  # noqa: E402

CUDA_SHAPE = {"n_embd": 768, "n_layer": 12, "n_head": 12}
CUDA_CONTEXT = 1024
FEW_SHOT_CONTEXT = 1024
FEW_SHOT_EXAMPLES = 5
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    name: str
    texts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_bytes: int = 0


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.model) if args.model else build_model(Path(scratch), device)
        if args.few_shot or args.mixed_lengths:
            report_batching(folder, Path(scratch), device, args)
            return
        lm = load_model(folder, device=str(device))
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=tuple(args.stop or ()))
        prompts = make_prompts(lm, args.prompts, settings, seed=args.seed)
        engines = make_engines(folder, lm, settings, device, args)
        runs = take_turns(engines, prompts, args.turns, device)
        answer_tokens = generate(lm, prompts, settings, token_budget=args.token_budget).tokens
        report(runs, lm, prompts, settings, answer_tokens, device)
        report_cache(lm, prompts, settings, args.token_budget)
        if args.drafts:
            fastest = min(run.seconds for run in runs.values() if run.name.startswith("lm-eval"))
            report_drafts(lm, prompts, settings, args, fastest)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", help="a causal LM folder (default: the demo model, or a random GPT-2 on cuda)")
    parser.add_argument("--prompts", type=int, default=160)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--stop",
        nargs="*",
        help="stop strings (EOS always ends an answer); --few-shot and --mixed-lengths: a blank line unless given",
    )
    parser.add_argument("--turns", type=int, default=4, help="engines take turns on this many slices of the prompts")
    parser.add_argument(
        "--lm-eval-batch-sizes", type=int, nargs="+", help="harness runs; the first is the reference (default 1 8 32)"
    )
    parser.add_argument("--token-budget", type=int, help="this engine's rows x (prompt + new tokens) per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch threads for every engine (this one runs a stream per thread)"
    )
    parser.add_argument("--drafts", action="store_true", help="also time drafted decoding of noisy candidates")
    parser.add_argument("--few-shot", action="store_true", help="only: 5-shot prompts, with and without prefix sharing")
    parser.add_argument(
        "--mixed-lengths", action="store_true", help="only: mixed prompt and answer lengths, with and without refilling"
    )
    return parser.parse_args()


def build_model(scratch: Path, device: torch.device) -> Path:
    """The trained demo model on CPU; a random ~100M-parameter GPT-2 on GPU (throughput only)."""
    if device.type == "cpu":
        return build_demo_models(scratch / "demo", preset="demo", log=lambda line: print(line, file=sys.stderr)).base
    tokenizer = train_tokenizer(stdlib_docstrings(1_000_000), vocab_size=8192)
    return write_gpt2_folder(
        scratch / "gpt2", tokenizer, n_positions=CUDA_CONTEXT, initializer_range=0.02, **CUDA_SHAPE
    )


def make_prompts(lm, count: int, settings: GenerationSettings, *, seed: int) -> list[str]:
    """Slices of standard-library docstrings, log-uniform from 8 tokens to what leaves room to answer."""
    corpus = lm.tokenizer("\n\n".join(stdlib_docstrings(1_000_000)), add_special_tokens=False, verbose=False)
    ids = corpus["input_ids"]
    longest = min(200, lm.max_length - settings.max_new_tokens)
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(math.log(8), math.log(longest), count)).astype(int)
    starts = rng.integers(0, len(ids) - longest, count)
    return [lm.tokenizer.decode(ids[s : s + n]) for s, n in zip(starts, lengths, strict=True)]


def make_few_shot_prompts(lm, count: int, *, seed: int) -> list[str]:
    """Five worked examples (a question and its answer: docstring slices), the same for every prompt,
    then a question of 20 - 40 tokens."""
    ids = lm.tokenizer("\n\n".join(stdlib_docstrings(1_000_000)), add_special_tokens=False, verbose=False)["input_ids"]
    rng = np.random.default_rng(seed)

    def piece(tokens: int) -> str:
        start = int(rng.integers(0, len(ids) - tokens))
        return lm.tokenizer.decode(ids[start : start + tokens]).strip()

    shots = "".join(f"Question: {piece(56)}\nAnswer: {piece(32)}\n\n" for _ in range(FEW_SHOT_EXAMPLES))
    return [f"{shots}Question: {piece(int(rng.integers(20, 41)))}\nAnswer:" for _ in range(count)]


def longer_context(folder: Path, scratch: Path) -> Path:
    """The GPT-2 at `folder` with its position table tiled to FEW_SHOT_CONTEXT rows, unless it has as many."""
    config = AutoConfig.from_pretrained(folder)
    if config.n_positions >= FEW_SHOT_CONTEXT:
        return folder
    model = AutoModelForCausalLM.from_pretrained(folder)
    state = model.state_dict()
    table = state["transformer.wpe.weight"]
    state["transformer.wpe.weight"] = table.repeat(-(-FEW_SHOT_CONTEXT // len(table)), 1)[:FEW_SHOT_CONTEXT]
    config.n_positions = FEW_SHOT_CONTEXT
    longer = AutoModelForCausalLM.from_config(config)
    longer.load_state_dict(state)
    longer.generation_config = model.generation_config
    target = scratch / "longer-context"
    longer.save_pretrained(target)
    AutoTokenizer.from_pretrained(folder, model_max_length=FEW_SHOT_CONTEXT).save_pretrained(target)
    return target


def make_engines(folder: Path, lm, settings: GenerationSettings, device: torch.device, args):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batch_sizes = args.lm_eval_batch_sizes or [1, 8, 32]
    engines: dict[str, Callable[[list[str]], list[str]]] = {}
    for size in batch_sizes:
        harness = HFLM(
            pretrained=str(folder), device=str(device), batch_size=size, dtype=dtype, max_length=lm.max_length
        )
        engines[f"lm-eval (batch {size})"] = harness_engine(harness, settings)
    naive = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    engines["naive generate loop"] = lambda prompts: naive_generate(naive, lm, prompts, settings)
    engines["this engine"] = lambda prompts: generate(lm, prompts, settings, token_budget=args.token_budget).texts
    return engines


def harness_engine(harness: HFLM, settings: GenerationSettings) -> Callable[[list[str]], list[str]]:
    arguments = {"until": list(settings.stop), "max_gen_toks": settings.max_new_tokens, "do_sample": False}

    def answers(prompts: list[str]) -> list[str]:
        requests = [
            Instance("generate_until", {}, (prompt, dict(arguments)), index) for index, prompt in enumerate(prompts)
        ]
        with contextlib.redirect_stderr(io.StringIO()):
            return harness.generate_until(requests, disable_tqdm=True)

    return answers


def naive_generate(model, lm, prompts: list[str], settings: GenerationSettings) -> list[str]:
    """One `model.generate` call per prompt: the straightforward loop."""
    eos = lm.tokenizer.eos_token_id
    answers = []
    with torch.inference_mode():
        for ids in prompt_token_ids(lm.tokenizer, prompts, settings, lm.max_length - settings.max_new_tokens):
            inputs = torch.tensor([ids], device=model.device)
            output = model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                pad_token_id=eos,
            )
            text = lm.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
            answers.append(cut_at_stop(text, settings.stop))
    return answers


def take_turns(engines, prompts: list[str], turns: int, device: torch.device) -> dict[str, Run]:
    """Time each engine on consecutive slices, alternating the order slice by slice (fair under load)."""
    runs = {name: Run(name) for name in engines}
    names = list(engines)
    for turn, part in enumerate(np.array_split(np.arange(len(prompts)), turns)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            with PeakMemory(device) as memory:
                started = time.perf_counter()
                texts = engines[name]([prompts[i] for i in part])
                synchronize(device)
                runs[name].seconds += time.perf_counter() - started
            runs[name].texts.extend(texts)
            runs[name].peak_bytes = max(runs[name].peak_bytes, memory.peak_bytes)
        print(f"  turn {turn + 1}/{turns} done", file=sys.stderr)
    return runs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory while the block runs, above what the process held when it started."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = self.peak_rss = resident_bytes()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_rss = max(self.peak_rss, resident_bytes())

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._start
            return
        self._stop.set()
        self._sampler.join()
        self.peak_bytes = max(self.peak_rss, resident_bytes()) - self._start


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def report(runs: dict[str, Run], lm, prompts, settings, answer_tokens: np.ndarray, device: torch.device) -> None:
    reference = next(iter(runs.values()))
    harness_runs = [run for run in runs.values() if run.name.startswith("lm-eval")]
    fastest_harness = min(harness_runs, key=lambda run: run.seconds)
    tokens = int(answer_tokens.sum())
    print(describe_workload(lm, prompts, settings, tokens, device))
    print(
        f"{'engine':<22}{'seconds':>9}{'tokens/s':>10}{'vs lm-eval best':>17}"
        f"{'identical to batch 1':>22}{'peak memory':>13}"
    )
    for run in runs.values():
        same = sum(a == b for a, b in zip(run.texts, reference.texts, strict=True))
        print(
            f"{run.name:<22}{run.seconds:>9.1f}{tokens / run.seconds:>10.0f}"
            f"{fastest_harness.seconds / run.seconds:>16.2f}x{f'{same}/{len(prompts)}':>22}"
            f"{run.peak_bytes / 2**20:>10.0f} MiB"
        )
    explain_differences(runs["this engine"], reference, lm, prompts, settings)


def describe_workload(lm, prompts, settings, tokens: int, device: torch.device) -> str:
    lengths = [len(ids) for ids in prompt_token_ids(lm.tokenizer, prompts, settings, lm.max_length)]
    parameters = sum(p.numel() for p in lm.model.parameters()) / 1e6
    threads = f", {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}" if device.type == "cpu" else ""
    return (
        f"{lm.model.config.model_type} {parameters:.1f}M parameters, context {lm.max_length}, "
        f"{str(lm.dtype).removeprefix('torch.')} on {device.type}{threads}; {len(prompts)} prompts of "
        f"{min(lengths)}-{max(lengths)} tokens, max_new_tokens {settings.max_new_tokens}, "
        f"{tokens} answer tokens (greedy, to EOS or the limit)"
    )


def explain_differences(ours: Run, reference: Run, lm, prompts, settings) -> None:
    """Where an answer departs from batch-1 decoding: the top-2 logit gap of the reference there."""
    differing = [i for i, (a, b) in enumerate(zip(ours.texts, reference.texts, strict=True)) if a != b]
    if not differing:
        print("every answer is identical to batch-1 greedy decoding")
        return
    ids = prompt_token_ids(lm.tokenizer, [prompts[i] for i in differing], settings, lm.max_length)
    for index, prompt_ids in zip(differing, ids, strict=True):
        mine = lm.tokenizer(ours.texts[index], add_special_tokens=False)["input_ids"]
        theirs = lm.tokenizer(reference.texts[index], add_special_tokens=False)["input_ids"]
        common = next(
            (k for k, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs))
        )
        with torch.inference_mode():
            context = torch.tensor([[*prompt_ids, *theirs[:common]]], device=lm.device)
            logits = lm.model(context).logits[0, -1].float()
        top = torch.topk(logits, 2).values
        print(
            f"  prompt {index}: departs at answer token {common}; top-2 logit gap there "
            f"{float(top[0] - top[1]):.2e} (a near-tie that padding-dependent rounding can flip)"
        )


def report_cache(lm, prompts, settings, token_budget: int | None) -> None:
    store = InMemoryGenerationStore()
    first = generate_cached(lm, prompts, store, settings, token_budget=token_budget)
    again = generate_cached(lm, prompts, store, settings, token_budget=token_budget)
    print(
        f"cache: first run {first.forward_passes} forward passes in {first.seconds:.2f} s; "
        f"second run {again.forward_passes} forward passes, {again.reused} of {len(prompts)} answers reused, "
        f"{again.seconds * 1000:.1f} ms"
    )
    print(json.dumps({"identical_answers_second_run": again.texts == first.texts}))


def noisy(lm, scale: float, seed: int = 0):
    """A candidate: every weight tensor plus Gaussian noise of `scale` times its own spread."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() > 1:
                noise = torch.randn(parameter.shape, generator=generator, device=lm.device, dtype=parameter.dtype)
                parameter.add_(noise * parameter.std() * scale)
    return dataclasses.replace(lm, model=model)


def report_drafts(lm, prompts, settings, args, harness_seconds: float) -> None:
    baseline = generate(lm, prompts, settings, token_budget=args.token_budget)
    drafts = [Draft(text, finish) for text, finish in zip(baseline.texts, baseline.finish, strict=True)]
    print(
        f"{'candidate':<12}{'unchanged':>10}{'accepted':>10}{'passes plain':>14}{'drafted':>9}"
        f"{'plain s':>9}{'drafted s':>11}{'tokens/s':>10}{'vs plain':>10}{'vs lm-eval best':>17}{'equal':>9}"
    )
    for scale in (0.01, 0.05, 0.3):
        candidate = noisy(lm, scale)
        seconds = {"plain": 0.0, "drafted": 0.0}
        results: dict[str, list] = {"plain": [], "drafted": []}
        for turn, part in enumerate(np.array_split(np.arange(len(prompts)), args.turns)):
            for name in ("plain", "drafted") if turn % 2 == 0 else ("drafted", "plain"):
                chosen = [prompts[i] for i in part]
                options = {"drafts": [drafts[i] for i in part]} if name == "drafted" else {}
                started = time.perf_counter()
                results[name].append(generate(candidate, chosen, settings, token_budget=args.token_budget, **options))
                synchronize(lm.device)
                seconds[name] += time.perf_counter() - started
        plain_texts = [text for result in results["plain"] for text in result.texts]
        drafted_texts = [text for result in results["drafted"] for text in result.texts]
        tokens = sum(result.tokens_generated for result in results["plain"])
        stats = DraftStats()
        for result in results["drafted"]:
            stats.add(result.drafting)
        unchanged = sum(a == b for a, b in zip(plain_texts, baseline.texts, strict=True))
        equal = sum(a == b for a, b in zip(drafted_texts, plain_texts, strict=True))
        print(
            f"{f'{scale:.0%} noise':<12}{f'{unchanged}/{len(prompts)}':>10}"
            f"{stats.accepted_tokens / max(1, stats.drafted_tokens):>10.0%}"
            f"{sum(r.forward_passes for r in results['plain']):>14}{sum(r.forward_passes for r in results['drafted']):>9}"
            f"{seconds['plain']:>9.2f}{seconds['drafted']:>11.2f}{tokens / seconds['drafted']:>10.0f}"
            f"{seconds['plain'] / seconds['drafted']:>9.2f}x{harness_seconds / seconds['drafted']:>16.2f}x"
            f"{f'{equal}/{len(prompts)}':>9}"
        )


def report_batching(folder: Path, scratch: Path, device: torch.device, args) -> None:
    """Prefix sharing on 5-shot prompts and refilling on mixed lengths, each against the engine without it."""
    stop = ("\n\n",) if args.stop is None else tuple(args.stop)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=stop)
    if args.few_shot:
        lm = load_model(longer_context(folder, scratch), device=str(device))
        prompts = make_few_shot_prompts(lm, args.prompts, seed=args.seed)
        compare_batching(lm, prompts, settings, "prefix sharing", {"share_prefixes": False}, args)
    if args.mixed_lengths:
        lm = load_model(folder, device=str(device))
        prompts = make_prompts(lm, args.prompts, settings, seed=args.seed)
        compare_batching(lm, prompts, settings, "refill", {"refill": False}, args)


def compare_batching(lm, prompts: list[str], settings: GenerationSettings, technique: str, off: dict, args) -> None:
    """The engine with and without one technique on the same prompts, taking turns slice by slice."""
    modes = {f"without {technique}": off, f"with {technique}": {}}
    results: dict[str, list] = {name: [] for name in modes}
    seconds = dict.fromkeys(modes, 0.0)
    for turn, part in enumerate(np.array_split(np.arange(len(prompts)), args.turns)):
        for name in list(modes)[:: 1 if turn % 2 == 0 else -1]:
            chosen = [prompts[i] for i in part]
            started = time.perf_counter()
            results[name].append(generate(lm, chosen, settings, token_budget=args.token_budget, **modes[name]))
            synchronize(lm.device)
            seconds[name] += time.perf_counter() - started
    reference = naive_generate(lm.model, lm, prompts, settings)
    without = [text for result in results[f"without {technique}"] for text in result.texts]
    tokens = sum(result.tokens_generated for result in results[f"without {technique}"])
    print(describe_workload(lm, prompts, settings, tokens, lm.device) + shared_prefix_note(lm, prompts, settings))
    print(
        f"{'engine':<26}{'passes':>8}{'prompt tokens fed':>19}{'seconds':>9}{'tokens/s':>10}"
        f"{'vs without':>12}{'equal to without':>18}{'equal to generate':>19}"
    )
    for name in modes:
        texts = [text for result in results[name] for text in result.texts]
        print(
            f"{name:<26}{sum(r.forward_passes for r in results[name]):>8}"
            f"{sum(r.prefill_tokens for r in results[name]):>19}{seconds[name]:>9.2f}{tokens / seconds[name]:>10.0f}"
            f"{seconds[f'without {technique}'] / seconds[name]:>11.2f}x"
            f"{f'{sum(a == b for a, b in zip(texts, without, strict=True))}/{len(prompts)}':>18}"
            f"{f'{sum(a == b for a, b in zip(texts, reference, strict=True))}/{len(prompts)}':>19}"
        )


def shared_prefix_note(lm, prompts: list[str], settings: GenerationSettings) -> str:
    ids = prompt_token_ids(lm.tokenizer, prompts, settings, lm.max_length - settings.max_new_tokens)
    common = min(
        next((k for k, (a, b) in enumerate(zip(ids[0], other, strict=False)) if a != b), len(other))
        for other in ids[1:]
    )
    return f"; common prefix {common} tokens" if common >= 8 else ""


if __name__ == "__main__":
    main()
