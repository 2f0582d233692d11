"""What the model reads: a sample's prompt or chat messages, as the token ids of its prompt."""

from collections.abc import Mapping, Sequence

from transformers import PreTrainedTokenizerBase

from evals.scoring.errors import SampleError
from evals.scoring.generation.settings import GenerationSettings
from evals.scoring.loading import LoadedModel, ModelFacts, tokenizer_chat_template_sha256

Messages = list[dict[str, str]]
Prompt = str | Messages


def messages_of(sample: Mapping) -> Prompt:
    """What a golden sample asks the model: its chat `messages`, else its `prompt`."""
    messages = sample.get("messages")
    if messages:
        return messages
    prompt = sample.get("prompt")
    if not prompt:
        raise SampleError(f"sample {sample.get('id')!r} has no prompt to generate from")
    return prompt


def chat_template_sha256(lm: "LoadedModel | ModelFacts | PreTrainedTokenizerBase") -> str:
    """Hash of the chat template of a model's tokenizer (of the empty string when it has none)."""
    if isinstance(lm, ModelFacts):
        return lm.chat_template_sha256
    return tokenizer_chat_template_sha256(lm.tokenizer if isinstance(lm, LoadedModel) else lm)


def prompt_token_ids(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], settings: GenerationSettings, max_prompt: int
) -> list[list[int]]:
    """Token ids of each prompt as the model reads it, left-truncated to `max_prompt` tokens."""
    texts = [_prompt_text(tokenizer, prompt, settings, position) for position, prompt in enumerate(prompts)]
    # Prompts longer than the context are left-truncated below: the tokenizer need not warn.
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    for position, ids in enumerate(encoded):
        if not ids:
            raise SampleError(f"the prompt at position {position} has no tokens")
    return [ids[-max_prompt:] for ids in encoded]


def _prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, settings: GenerationSettings, position: int
) -> str:
    if isinstance(prompt, str) and not settings.chat_template:
        return prompt
    if not tokenizer.chat_template:
        raise SampleError(f"the prompt at position {position} needs a chat template, and the tokenizer has none")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
