"""Greedy answers by `model.generate`, one prompt at a time (the reference the engine's answers equal),
and a record of the forward passes a model runs."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from evals.scoring.generation import GenerationSettings, cut_at_stop, prompt_token_ids
from evals.scoring.loading import LoadedModel


def alone(lm: LoadedModel, prompts: list[str], settings: GenerationSettings) -> list[str]:
    """Each prompt's answer by `model.generate` on its own, cut at an EOS token (the configured one or the
    tokenizer's, as the engine does) and the first stop string."""
    eos = [lm.model.generation_config.eos_token_id, lm.tokenizer.eos_token_id]
    answers = []
    with torch.inference_mode():
        for ids in prompt_token_ids(lm.tokenizer, prompts, settings, lm.max_length - settings.max_new_tokens):
            output = lm.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0],
            )
            tokens = output[0, len(ids) :].tolist()
            tokens = next((tokens[:index] for index, token in enumerate(tokens) if token in eos), tokens)
            answers.append(cut_at_stop(lm.tokenizer.decode(tokens, skip_special_tokens=True), settings.stop))
    return answers


@dataclass(frozen=True)
class Pass:
    """One forward pass: its rows, the tokens it fed (padding left out) and the columns already cached."""

    rows: int
    tokens: int
    cached: int


@contextmanager
def forward_passes(lm: LoadedModel) -> Iterator[list[Pass]]:
    """The forward passes the model runs inside the block, in order."""
    passes: list[Pass] = []

    def record(_module, _args, kwargs) -> None:
        fed = kwargs["input_ids"].shape[1]
        cache = kwargs.get("past_key_values")
        cached = cache.get_seq_length() if cache is not None else 0
        passes.append(Pass(kwargs["input_ids"].shape[0], int(kwargs["attention_mask"][:, -fed:].sum()), cached))

    handle = lm.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield passes
    finally:
        handle.remove()
