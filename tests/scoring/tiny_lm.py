"""Small causal language models built on the spot, for tests and benchmarks of the scoring engine.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on docstrings of the Python
standard library, and the weights (GPT-2, Llama, Qwen2, Mistral, LoRA adapters) are random with a wide initialisation so that the model's
predictions depend strongly on the context (a uniform model would hide windowing mistakes).
"""

import ast
import sysconfig
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

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


BOS, EOS = "<s>", "</s>"
DECODER_CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}


def train_bos_eos_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A Llama-style tokenizer: BOS `<s>` differs from EOS `</s>` and is added in front of each text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS)


def write_decoder_folder(
    folder: Path,
    tokenizer: PreTrainedTokenizerFast,
    architecture: str,
    *,
    context: int = 64,
    seed: int = 0,
    vocab_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Save a random Llama-, Qwen2- or Mistral-shaped decoder (grouped-query attention, untied head)."""
    config = DECODER_CONFIGS[architecture](
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_lora_adapter(
    folder: Path,
    base_dir: Path,
    *,
    target_modules: list[str],
    rank: int = 4,
    seed: int = 0,
    fan_in_fan_out: bool = False,
) -> Path:
    """A LoRA adapter of `base_dir` with random (non-zero) A and B, saved as `save_pretrained` does."""
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=target_modules,
        fan_in_fan_out=fan_in_fan_out,
        init_lora_weights=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_peft_model(base, config).save_pretrained(folder)
    return folder
