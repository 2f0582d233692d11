"""One decoding step of a batch: the forward pass (only the fed positions kept go through the output
head), the token each row chooses (greedy, or drawn from the row's own generator), and what a row
accepts of them: its own choice after its last token, and every draft token its choices agreed with,
ending the answer at EOS, a stop string or `max_new_tokens` token by token as plain decoding would."""

import hashlib
import inspect
import json
from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from evals.scoring.generation.drafts import Draft, DraftStats
from evals.scoring.generation.settings import EOS, LENGTH, STOP, GenerationSettings, cut_at_stop
from evals.scoring.loading import LoadedModel


class Batching(NamedTuple):
    """How the engine batches its work (both on unless a comparison turns one off)."""

    share_prefixes: bool = True
    refill: bool = True


class Taken(NamedTuple):
    """What one step gave a row: how many draft tokens agreed, and why the answer ended (None: it goes on)."""

    accepted: int
    finish: str | None


class Decoder:
    """The model, settings and token budget of one `generate` call, the steps it runs, and the forward
    passes, prompt tokens and drafting they add up to."""

    def __init__(
        self, lm: LoadedModel, settings: GenerationSettings, max_prompt: int, token_budget: int, batching: Batching
    ) -> None:
        self.lm = lm
        self.settings = settings
        self.max_prompt = max_prompt
        self.token_budget = token_budget
        self.batching = batching
        self.eos_ids = _eos_ids(lm.model, lm.tokenizer)
        self.pad_id = _pad_id(lm.tokenizer, self.eos_ids)
        self.keeps_last_logits = "logits_to_keep" in inspect.signature(lm.model.forward).parameters
        self.stop_window = 4 * max((len(stop) for stop in settings.stop), default=0) + 2
        self.forward_passes = 0
        self.prefill_tokens = 0
        self.drafting = DraftStats()

    @property
    def eos(self) -> int:
        eos = self.lm.tokenizer.eos_token_id
        return eos if eos in self.eos_ids else min(self.eos_ids)

    def draft_ids(self, drafts: Sequence[Draft | None]) -> list[list[int] | None]:
        """Each draft's tokens by the model's tokenizer (an answer that ended at EOS: with the EOS token)."""
        texts = [draft.text if draft is not None else "" for draft in drafts]
        encoded = self.lm.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
        ids: list[list[int] | None] = []
        for draft, tokens in zip(drafts, encoded["input_ids"], strict=True):
            ended = tokens + [self.eos] if draft is not None and draft.finish == EOS and self.eos_ids else tokens
            ids.append(ended[: self.settings.max_new_tokens] if draft is not None and ended else None)
        return ids

    def accept(self, answer: list[int], chosen: list[int], proposed: list[int]) -> Taken:
        """Append the model's tokens of one step to `answer`: its choice after the last token and after
        every draft token that agreed with its choice before; ends the answer as plain decoding would."""
        for index, token in enumerate(chosen[: len(proposed) + 1]):
            # A draft token the model chose too is accepted, the one that ends the answer included.
            agreed = index < len(proposed) and proposed[index] == token
            if token in self.eos_ids:
                return Taken(index + agreed, EOS)
            answer.append(token)
            if self._hit_stop(answer):
                return Taken(index + agreed, STOP)
            if len(answer) == self.settings.max_new_tokens:
                return Taken(index + agreed, LENGTH)
            if not agreed:
                return Taken(index, None)
        raise AssertionError("a step ends at the model's first own token")

    def step_logits(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, keep: int
    ) -> torch.Tensor:
        """Logits of the last `keep` fed positions (only those go through the output head)."""
        kept = {"logits_to_keep": keep} if self.keeps_last_logits else {}
        output = self.lm.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **kept,
        )
        return output.logits[:, -keep:, :].float()

    def choose(self, logits: torch.Tensor, samplers: list[torch.Generator] | None) -> list[int]:
        if samplers is None:
            return greedy(logits).tolist()
        probabilities = _nucleus(torch.softmax(logits / self.settings.temperature, dim=-1), self.settings.top_p)
        return [
            int(torch.multinomial(row, 1, generator=generator))
            for row, generator in zip(probabilities, samplers, strict=True)
        ]

    def samplers(self, prompts: list[list[int]]) -> list[torch.Generator] | None:
        if not self.settings.do_sample:
            return None
        generators = []
        for ids in prompts:
            digest = hashlib.sha256(json.dumps([self.settings.seed, ids]).encode()).digest()
            generator = torch.Generator(device=self.lm.device)
            generator.manual_seed(int.from_bytes(digest[:8], "little"))
            generators.append(generator)
        return generators

    def answer_text(self, answer: list[int]) -> str:
        return cut_at_stop(self.lm.tokenizer.decode(answer, skip_special_tokens=True), self.settings.stop)

    def _hit_stop(self, answer: list[int]) -> bool:
        if not self.settings.stop:
            return False
        tail = self.lm.tokenizer.decode(answer[-self.stop_window :], skip_special_tokens=True)
        return any(stop in tail for stop in self.settings.stop)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token at each position, the first of equals as `argmax` and `generate` choose
    it; `max(...).indices` runs several times faster than `argmax` over a vocabulary on a CPU."""
    return logits.max(dim=-1).indices


def _nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches `top_p` (the top one always)."""
    if top_p >= 1:
        return probabilities
    ordered, indices = probabilities.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered >= top_p
    ordered[outside] = 0
    return torch.zeros_like(probabilities).scatter(-1, indices, ordered)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        configured = [configured]
    ids = set(configured or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def _pad_id(tokenizer: PreTrainedTokenizerBase, eos_ids: frozenset[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return min(eos_ids) if eos_ids else 0
