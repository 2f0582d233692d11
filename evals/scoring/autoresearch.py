"""A small, real autoresearch-style loop over the demo corpus (pure torch: no Django).

Each run trains a fresh GPT-2 from a mutated training configuration for a fixed wall-clock budget,
then measures validation bits per byte on held-out text: every token of each text predicted, the
first from end-of-text, Σ NLL / (ln 2 · Σ UTF-8 bytes), the vocabulary-agnostic objective of
autoresearch. The loop keeps a run when it beats the best so far and discards it otherwise; now and
then it tries a configuration that is broken on purpose (attention heads that do not divide the
width), which fails inside transformers with its real traceback. The log of each run reads like
autoresearch's train.py output, ending in its `---` summary block.
"""

import dataclasses
import datetime
import hashlib
import json
import math
import random
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from evals.scoring.demo_models import new_optimizer, next_token_loss, random_batches, token_stream

# Every this many runs, one configuration is broken on purpose.
BROKEN_EVERY = 5
LOG_EVERY_STEPS = 10
MUTATION_ATTEMPTS = 20
# Training state per parameter: the float32 value, its gradient and AdamW's two moments.
STATE_BYTES_PER_PARAMETER = 4 * 4


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1.5e-3
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    warmup_steps: int = 10
    batch_size: int = 8
    context: int = 64

    @property
    def commit(self) -> str:
        """A stand-in for train.py's git commit: the short hash of the configuration."""
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:7]


@dataclass(frozen=True)
class RunResult:
    config: TrainConfig
    description: str
    status: str  # "keep", "discard" or "crash"
    val_bpb: float | None
    memory_gb: float | None
    steps: int
    training_seconds: float
    log: str
    model: GPT2LMHeadModel | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None


MUTATIONS: dict[str, Callable[[TrainConfig, random.Random], TrainConfig]] = {
    "learning rate": lambda c, r: dataclasses.replace(
        c, learning_rate=c.learning_rate * r.choice((0.5, 0.7, 1.4, 2.0))
    ),
    "width": lambda c, r: dataclasses.replace(c, n_embd=max(32, c.n_embd + r.choice((-32, 32)))),
    "depth": lambda c, r: dataclasses.replace(c, n_layer=max(1, c.n_layer + r.choice((-1, 1)))),
    "warm-up": lambda c, r: dataclasses.replace(c, warmup_steps=max(1, int(c.warmup_steps * r.choice((0.5, 2.0))))),
}


def mutate(config: TrainConfig, rng: random.Random) -> tuple[TrainConfig, str]:
    """One change to one knob of the training configuration, and what it was."""
    knob = rng.choice(sorted(MUTATIONS))
    changed = MUTATIONS[knob](config, rng)
    before, after = _knob_values(config, knob), _knob_values(changed, knob)
    return changed, f"{knob} {before} -> {after}"


def _untried_mutation(config: TrainConfig, rng: random.Random, tried: set[str]) -> tuple[TrainConfig, str]:
    """A mutation to a configuration not run before (a clamped knob can land where it started)."""
    for _ in range(MUTATION_ATTEMPTS):
        changed, description = mutate(config, rng)
        if changed.commit not in tried:
            break
    return changed, description


def _knob_values(config: TrainConfig, knob: str) -> str:
    return {
        "learning rate": f"{config.learning_rate:.2g}",
        "width": str(config.n_embd),
        "depth": str(config.n_layer),
        "warm-up": str(config.warmup_steps),
    }[knob]


def broken(config: TrainConfig) -> tuple[TrainConfig, str]:
    """A width the attention heads cannot split: transformers refuses to build the model."""
    changed = dataclasses.replace(config, n_embd=config.n_embd + 2, n_head=config.n_head)
    return changed, f"width {config.n_embd} -> {changed.n_embd} with {changed.n_head} heads"


def build_model(config: TrainConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    gpt2 = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.context,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return GPT2LMHeadModel(gpt2)


def train_for(
    config: TrainConfig, tokenizer: PreTrainedTokenizerFast, stream: torch.Tensor, budget_s: float, seed: int
) -> tuple[GPT2LMHeadModel, list[str], int, float]:
    """Train from scratch until the wall-clock budget is spent: (model, log lines, steps, seconds)."""
    torch.manual_seed(seed)
    model = build_model(config, tokenizer)
    optimizer = new_optimizer(model, config.learning_rate)
    batches = random_batches(stream, config.batch_size, config.context, torch.Generator().manual_seed(seed))
    lines = [f"num_params: {sum(p.numel() for p in model.parameters()):,}", f"Time budget: {budget_s:g}s"]
    model.train()
    started = time.perf_counter()
    step = 0
    for step, batch in enumerate(batches):
        elapsed = time.perf_counter() - started
        if elapsed >= budget_s:
            break
        for group in optimizer.param_groups:
            group["lr"] = group["lr_scale"] * config.learning_rate * min(1.0, (step + 1) / config.warmup_steps)
        loss = next_token_loss(model, batch)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % LOG_EVERY_STEPS == 0:
            lines.append(f"step {step:05d} | loss: {loss.item():.6f} | remaining: {max(0.0, budget_s - elapsed):.0f}s")
    model.eval()
    return model, lines, step, time.perf_counter() - started


@torch.no_grad()
def bits_per_byte(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> float:
    """Σ NLL (nats) / (ln 2 · Σ UTF-8 bytes) over the texts, each token predicted from the ones before it
    in its window, the first from end-of-text; texts longer than the context in consecutive windows."""
    context = model.config.n_positions
    eos = tokenizer.eos_token_id
    total_nll, total_bytes = 0.0, 0
    for text in texts:
        ids = [eos, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        for start in range(0, len(ids) - 1, context):
            window = torch.tensor([ids[start : start + context + 1]])
            logits = model(input_ids=window[:, :-1]).logits
            total_nll += torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item()
        total_bytes += len(text.encode("utf-8"))
    return total_nll / (math.log(2) * total_bytes)


def training_state_gb(model: GPT2LMHeadModel) -> float:
    return sum(p.numel() for p in model.parameters()) * STATE_BYTES_PER_PARAMETER / 1024**3


def run_once(
    config: TrainConfig,
    description: str,
    *,
    tokenizer: PreTrainedTokenizerFast,
    stream: torch.Tensor,
    val_texts: Sequence[str],
    budget_s: float,
    best: float | None,
    seed: int,
) -> RunResult:
    """One budgeted run: train, evaluate, keep or discard; an exception is the crash, with its traceback."""
    try:
        model, lines, steps, seconds = train_for(config, tokenizer, stream, budget_s, seed)
        val_bpb = bits_per_byte(model, tokenizer, val_texts)
    except Exception:  # whatever the configuration breaks is the run's crash, logged as train.py would
        return RunResult(config, description, "crash", None, None, 0, 0.0, traceback.format_exc())
    memory_gb = training_state_gb(model)
    status = "keep" if best is None or val_bpb < best else "discard"
    summary = [
        "---",
        f"val_bpb:          {val_bpb:.6f}",
        f"training_seconds: {seconds:.1f}",
        f"num_steps:        {steps}",
        f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.2f}",
        f"depth:            {config.n_layer}",
    ]
    return RunResult(
        config, description, status, val_bpb, memory_gb, steps, seconds, "\n".join([*lines, *summary]), model
    )


def autoresearch_runs(
    *,
    tokenizer: PreTrainedTokenizerFast,
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    budget_s: float,
    runs: int,
    seed: int = 0,
    start: TrainConfig | None = None,
) -> Iterator[RunResult]:
    """The loop: the first run is the baseline; each next one mutates the best configuration so far."""
    rng = random.Random(seed)
    stream = token_stream(tokenizer, train_texts)
    best_config, best_value = start or TrainConfig(), None
    tried: set[str] = set()
    for index in range(runs):
        if index == 0:
            config, description = best_config, "baseline"
        elif index % BROKEN_EVERY == BROKEN_EVERY - 1:
            config, description = broken(best_config)
        else:
            config, description = _untried_mutation(best_config, rng, tried)
        tried.add(config.commit)
        started_at = datetime.datetime.now(datetime.UTC)
        result = run_once(
            config,
            description,
            tokenizer=tokenizer,
            stream=stream,
            val_texts=val_texts,
            budget_s=budget_s,
            best=best_value,
            seed=seed + index,
        )
        result = dataclasses.replace(result, started_at=started_at, finished_at=datetime.datetime.now(datetime.UTC))
        if result.status == "keep":
            best_config, best_value = config, result.val_bpb
        yield result
