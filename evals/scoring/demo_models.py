"""Build a small demo model family from the text corpus shipped in ``evals/demo_data``.

Three GPT-2 style causal LMs share one byte-level BPE tokenizer:

- ``base``: trained from scratch on English technical prose (Python reference, docstrings,
  IDLE changelog);
- ``improved``: ``base`` trained further on the same prose, so it scores better;
- ``drifted``: ``base`` fine-tuned on Python source code, so it forgets the prose and its
  bits per byte on the golden set gets clearly worse.

The golden set is a held-out sample of the prose passages (never trained on), one category per
source. It does not depend on the seed, so every build scores against the same samples.

The demo adds tasks built from other held-out passages (`add_demo_tasks`): multiple-choice questions
(which words continue this passage?) and two-turn conversations, asked through a chat template that
reads a conversation as the passage it comes from.
"""

import argparse
import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

DEMO_DATA_DIR = Path(__file__).resolve().parents[1] / "demo_data"
TRAINING_SOURCES = {
    "reference": "python_reference.txt",
    "docstrings": "python_docstrings.txt",
    "changelog": "idle_changelog.txt",
}
DRIFT_SOURCE = "python_code.txt"
PASSAGE_SEPARATOR = "\n\f\n"
END_OF_TEXT = "<|endoftext|>"
# One passage in this many goes to the golden set; a content hash picks it, not the seed.
GOLDEN_ONE_IN = 4
# Golden passages that also carry a prompt (their start) and a reference answer (how they go on).
PROMPT_ONE_IN = 2
PROMPT_CHARS = 100
REFERENCE_CHARS = 120
# The demo's multiple-choice questions: a passage's start, then its next words among the words at the
# same place in other passages (one choice each).
QUESTIONS = 32
QUESTION_CHOICES = 4
QUESTION_WORDS = 6
QUESTION_MIN_CUT = 10
# Two-turn conversations, each over one passage: two starts, each with how it really goes on.
CONVERSATIONS = 4
CONVERSATION_TURNS = 2
# The demo models' chat template: a conversation is read as the passage it comes from, each message
# going on from the one before, so a model trained on prose answers a turn by going on from it.
DEMO_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if not loop.first %} {% endif %}{{ message['content'] | trim }}{% endfor %}"
)
MAX_TORCH_THREADS = 4
# Embedding tables learn best with a much larger step than the transformer blocks when the
# training budget is a few hundred steps.
EMBEDDING_LR_SCALE = 10.0
EMBEDDING_TABLES = ("wte.weight", "wpe.weight", "lm_head.weight")

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoPreset:
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    context: int
    batch_size: int
    base_steps: int
    improved_steps: int
    drift_steps: int
    learning_rate: float
    warmup_steps: int


PRESETS = {
    "demo": DemoPreset(
        vocab_size=3072,
        n_layer=3,
        n_embd=128,
        n_head=4,
        context=256,
        batch_size=4,
        base_steps=180,
        improved_steps=240,
        drift_steps=80,
        learning_rate=1.5e-3,
        warmup_steps=20,
    ),
    "test": DemoPreset(
        vocab_size=2048,
        n_layer=2,
        n_embd=128,
        n_head=4,
        context=64,
        batch_size=8,
        base_steps=80,
        improved_steps=90,
        drift_steps=30,
        learning_rate=1.5e-3,
        warmup_steps=10,
    ),
}


@dataclass(frozen=True)
class DemoBuild:
    """Paths of the built Hugging Face folders and golden JSONL file.

    ``losses`` maps each model name to the training loss of every optimiser step of its own
    phase: ``base`` from scratch, ``improved`` its continuation of ``base``, ``drifted`` its
    fine-tuning of ``base`` on the drift text.
    """

    base: Path
    improved: Path
    drifted: Path
    golden: Path
    losses: dict[str, list[float]]


@dataclass(frozen=True)
class DemoSample:
    """A held-out passage (`text`, scored for likelihood); some also ask the model to go on from the
    passage's start (`prompt`) and hold how the passage really goes on (`reference`)."""

    id: str
    text: str
    category: str
    prompt: str = ""
    reference: str = ""


@dataclass(frozen=True)
class CorpusSplit:
    training: list[str]
    golden: list[DemoSample]
    drift: list[str]


def read_passages(filename: str) -> list[str]:
    text = (DEMO_DATA_DIR / filename).read_text(encoding="utf-8")
    return text.rstrip("\n").split(PASSAGE_SEPARATOR)


def is_golden(passage: str) -> bool:
    digest = hashlib.sha256(passage.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % GOLDEN_ONE_IN == 0


def split_corpus() -> CorpusSplit:
    training: list[str] = []
    golden: list[DemoSample] = []
    for category, filename in TRAINING_SOURCES.items():
        passages = read_passages(filename)
        held_out = [passage for passage in passages if is_golden(passage)]
        golden += [_demo_sample(f"{category}-{n:03d}", text, category) for n, text in enumerate(held_out)]
        training += [passage for passage in passages if not is_golden(passage)]
    return CorpusSplit(training=training, golden=golden, drift=read_passages(DRIFT_SOURCE))


def _demo_sample(sample_id: str, text: str, category: str) -> DemoSample:
    """Every PROMPT_ONE_IN-th passage long enough also asks the model to go on from its first
    PROMPT_CHARS characters; the reference is the REFERENCE_CHARS that really follow (cut at words)."""
    number = int(sample_id.rsplit("-", 1)[1])
    flat = " ".join(text.split())
    if number % PROMPT_ONE_IN or len(flat) < PROMPT_CHARS + REFERENCE_CHARS:
        return DemoSample(sample_id, text, category)
    prompt, reference, _ = _start_and_sequel(flat)
    return DemoSample(sample_id, text, category, prompt=prompt, reference=reference)


def _start_and_sequel(flat: str) -> tuple[str, str, str]:
    """The first PROMPT_CHARS characters of a flattened text, the REFERENCE_CHARS that follow, and the
    rest, each cut at a word boundary."""
    cut = flat.rfind(" ", 0, PROMPT_CHARS)
    start, rest = flat[:cut], flat[cut + 1 :]
    end = rest.rfind(" ", 0, REFERENCE_CHARS)
    return start, rest[:end], rest[end + 1 :]


def question_passages(samples: Sequence[DemoSample]) -> list[DemoSample]:
    """The QUESTIONS held-out passages the multiple-choice questions come from: passages that ask no
    prompt and are long enough, taken at an even stride so that every source is asked about."""
    long_enough = QUESTION_MIN_CUT + QUESTION_CHOICES * 2 + QUESTION_WORDS
    passages = [s for s in samples if not s.prompt and len(s.text.split()) >= long_enough]
    return passages[:: max(1, len(passages) // QUESTIONS)][:QUESTIONS]


def demo_questions(samples: Sequence[DemoSample]) -> list[dict]:
    """Multiple-choice rows, "which words continue this passage?": a passage's first words as the
    context, its next QUESTION_WORDS words among those at the same place in the next three question
    passages, the gold choice moving through every position."""
    chosen = question_passages(samples)
    questions = []
    for index, sample in enumerate(chosen):
        cut = QUESTION_MIN_CUT + index % (QUESTION_CHOICES * 2)
        words = [passage.text.split() for passage in chosen[index:] + chosen[:index]]
        choices = [" ".join(other[cut : cut + QUESTION_WORDS]) for other in words[1:QUESTION_CHOICES]]
        gold = index % QUESTION_CHOICES
        choices.insert(gold, " ".join(words[0][cut : cut + QUESTION_WORDS]))
        row = {"id": f"choice-{index:03d}", "category": sample.category, "prompt": " ".join(words[0][:cut])}
        questions.append(row | {"choices": choices, "answer": gold})
    return questions


def demo_conversations(samples: Sequence[DemoSample]) -> list[dict]:
    """CONVERSATIONS two-turn conversations, each over a long held-out passage that asks no prompt and
    no question: turn 1 is the passage's start, turn 2 the words after how that start goes on; each
    turn's reference is how it really goes on. The model answers turn 2 after its own answer to turn 1."""
    needed = CONVERSATION_TURNS * (PROMPT_CHARS + REFERENCE_CHARS)
    asked = {sample.id for sample in question_passages(samples)}
    passages = [s for s in samples if not s.prompt and s.id not in asked and len(" ".join(s.text.split())) >= needed]
    conversations = []
    for index, sample in enumerate(passages[:: max(1, len(passages) // CONVERSATIONS)][:CONVERSATIONS]):
        rest, turns = " ".join(sample.text.split()), []
        for _ in range(CONVERSATION_TURNS):
            start, reference, rest = _start_and_sequel(rest)
            turns.append({"content": start, "reference": reference})
        conversations.append({"id": f"talk-{index:03d}", "category": sample.category, "turns": turns})
    return conversations


def write_golden(path: Path, samples: Sequence[DemoSample], tasks: Sequence[dict] = ()) -> None:
    """The held-out passages as golden rows, then the `tasks` rows (questions, conversations) as they are."""
    rows = (
        {"id": s.id, "text": s.text, "category": s.category}
        | ({"prompt": s.prompt, "reference": s.reference} if s.prompt else {})
        for s in samples
    )
    lines = (json.dumps(row, ensure_ascii=False) for row in [*rows, *tasks])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_demo_tasks(build: DemoBuild) -> DemoBuild:
    """Make a build the demo's: its golden file gains the multiple-choice questions and the conversations
    (`demo_questions`, `demo_conversations`) after the held-out passages, and each model's tokenizer the
    chat template the conversations' turns are asked through (the weights are unchanged)."""
    golden = split_corpus().golden
    write_golden(build.golden, golden, [*demo_questions(golden), *demo_conversations(golden)])
    for folder in (build.base, build.improved, build.drifted):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
        tokenizer.chat_template = DEMO_CHAT_TEMPLATE
        tokenizer.save_pretrained(folder)
    return build


def train_tokenizer(texts: Sequence[str], vocab_size: int, context: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with one special token that is BOS, EOS and padding at once.

    Rolling log-likelihood scoring predicts the first token of a text from the BOS token, so
    the tokenizer must declare one; it must not add it by itself, which this one never does.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=context,
    )


def token_stream(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> torch.Tensor:
    """All texts as one token sequence, each preceded by end-of-text as at scoring time."""
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return torch.tensor([token for encoding in encodings for token in (eos, *encoding.ids)])


def random_batches(
    stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    offsets = torch.arange(length)
    while True:
        starts = torch.randint(0, len(stream) - length, (batch_size, 1), generator=generator)
        yield stream[starts + offsets]


def new_model(preset: DemoPreset, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=preset.context,
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        # Dropout only slows learning at this scale and makes runs depend on more RNG state.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Tied tables make the first lesson, which token follows which, slower to learn.
        tie_word_embeddings=False,
    )
    return GPT2LMHeadModel(config)


def new_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    named = list(model.named_parameters())
    tables = [param for name, param in named if name.endswith(EMBEDDING_TABLES)]
    blocks = [param for name, param in named if not name.endswith(EMBEDDING_TABLES)]
    groups = [
        {"params": tables, "lr_scale": EMBEDDING_LR_SCALE, "weight_decay": 0.0},
        {"params": blocks, "lr_scale": 1.0, "weight_decay": 0.1},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95))


def warmup_then_constant(warmup_steps: int) -> Callable[[int, int], float]:
    return lambda step, _total: min(1.0, (step + 1) / warmup_steps)


def constant_then_decay(step: int, total: int) -> float:
    """Hold the rate for the first half, then decay linearly: the cool-down adds a clear gain."""
    half = total // 2
    return 1.0 if step < half else 1.0 - 0.9 * (step - half) / max(1, total - half)


@dataclass(frozen=True)
class Phase:
    name: str
    steps: int
    lr_factor: Callable[[int, int], float]
    seed: int


def next_token_loss(model: GPT2LMHeadModel, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every token given the ones before it in its window."""
    # End-of-text inside a window is a real token to attend to, not padding.
    logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten())


def train_phase(
    model: GPT2LMHeadModel,
    optimizer: torch.optim.Optimizer,
    stream: torch.Tensor,
    preset: DemoPreset,
    phase: Phase,
    log: Log,
) -> list[float]:
    generator = torch.Generator().manual_seed(phase.seed)
    batches = random_batches(stream, preset.batch_size, preset.context, generator)
    model.train()
    losses: list[float] = []
    for step, batch in zip(range(phase.steps), batches, strict=False):
        for group in optimizer.param_groups:
            group["lr"] = group["lr_scale"] * preset.learning_rate * phase.lr_factor(step, phase.steps)
        loss = next_token_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % max(1, phase.steps // 5) == 0:
            log(f"{phase.name}: step {step + 1}/{phase.steps} loss {loss.item():.3f}")
    model.eval()
    return losses


def save_model(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` threads, then restore the caller's setting.

    One core is left to the rest of the machine: when another process keeps a core busy, torch
    threads that wait for each other at every operation run dozens of times slower than one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Saving a model draws a progress bar; the build reports through ``log`` instead."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def build_demo_models(outdir: Path, *, preset: str = "demo", seed: int = 0, log: Log = print) -> DemoBuild:
    """Train the demo tokenizer and models into ``outdir``.

    Deterministic given ``seed`` on one machine: the thread count (all cores but one, at most
    four) changes the last bits of the arithmetic.
    """
    settings = PRESETS[preset]
    outdir.mkdir(parents=True, exist_ok=True)
    corpus = split_corpus()
    golden = outdir / "golden.jsonl"
    write_golden(golden, corpus.golden)
    log(f"golden: {len(corpus.golden)} held-out samples -> {golden}")
    threads = max(1, min(MAX_TORCH_THREADS, available_cores() - 1))
    # fork_rng keeps the caller's global random state as it was.
    with torch_threads(threads), quiet_progress_bars(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        losses = train_family(outdir, settings, corpus, seed, log)
    return DemoBuild(
        base=outdir / "base", improved=outdir / "improved", drifted=outdir / "drifted", golden=golden, losses=losses
    )


def train_family(outdir: Path, preset: DemoPreset, corpus: CorpusSplit, seed: int, log: Log) -> dict[str, list[float]]:
    """Save ``base``, ``improved`` and ``drifted`` under ``outdir``; return each one's losses."""
    tokenizer = train_tokenizer(corpus.training, preset.vocab_size, preset.context)
    prose = token_stream(tokenizer, corpus.training)
    code = token_stream(tokenizer, corpus.drift)
    log(f"tokenizer: {len(tokenizer)} tokens; prose {len(prose)} tokens, drift code {len(code)} tokens")
    warmup = warmup_then_constant(preset.warmup_steps)
    model = new_model(preset, tokenizer)
    optimizer = new_optimizer(model, preset.learning_rate)
    base = Phase("base", preset.base_steps, warmup, seed)
    losses = {"base": train_phase(model, optimizer, prose, preset, base, log)}
    save_model(model, tokenizer, outdir / "base")
    drifting = copy.deepcopy(model)
    improve = Phase("improved", preset.improved_steps, constant_then_decay, seed + 1)
    losses["improved"] = train_phase(model, optimizer, prose, preset, improve, log)
    save_model(model, tokenizer, outdir / "improved")
    drift = Phase("drifted", preset.drift_steps, warmup, seed + 2)
    losses["drifted"] = train_phase(drifting, new_optimizer(drifting, preset.learning_rate), code, preset, drift, log)
    save_model(drifting, tokenizer, outdir / "drifted")
    return losses


def summarise_losses(losses: dict[str, list[float]], window: int = 5) -> Iterator[str]:
    for name, values in losses.items():
        first = sum(values[:window]) / len(values[:window])
        last = sum(values[-window:]) / len(values[-window:])
        yield f"{name}: training loss {first:.3f} -> {last:.3f} over {len(values)} steps"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    build = build_demo_models(args.outdir, preset=args.preset, seed=args.seed)
    for line in summarise_losses(build.losses):
        print(line)
    print(f"built {build.base}, {build.improved}, {build.drifted} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
