"""Small causal language models built on the spot, for tests and benchmarks of the scoring engine.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on docstrings of the Python
standard library, and the GPT-2 weights are random with a wide initialisation so that the model's
predictions depend strongly on the context (a uniform model would hide windowing mistakes).
"""

import ast
import sysconfig
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"


def stdlib_docstrings(min_chars: int) -> list[str]:
    """Docstrings of the standard library, in a fixed order, until `min_chars` characters."""
    texts: list[str] = []
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for text in _docstrings_of(path):
            texts.append(text)
            total += len(text)
            if total >= min_chars:
                return texts
    return texts


def _docstrings_of(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    nodes = [node for node in ast.walk(tree) if isinstance(node, documented)]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE whose only special token is end-of-text (also BOS)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT)


def write_gpt2_folder(
    folder: Path,
    tokenizer: PreTrainedTokenizerFast,
    *,
    n_positions: int,
    n_embd: int,
    n_layer: int,
    n_head: int,
    seed: int = 0,
    initializer_range: float = 0.2,
) -> Path:
    """Save a random GPT-2 with `tokenizer` as a Hugging Face folder (safetensors)."""
    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
