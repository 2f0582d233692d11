"""A local judge: a Hugging Face causal LM scored without sampling (G-Eval style).

The conversation is rendered with the tokenizer's chat template (with the generation prompt), or
as `role: content` paragraphs for a model without one, followed by the reply's verdict prefix
(`Rating: [[`, `[[`). Each verdict's probability is that of the continuation `verdict]]`, read
from the model's next-token distributions and normalised over the verdicts, so a two-token
`10` competes fairly with `1`. The reply is the most probable verdict; a pointwise score is the
probability-weighted mean rating (`judging` reads `probabilities`).

A prompt runs once for the verdicts whose continuations have the same number of tokens (cut from
the left to leave them room, as one pass per verdict would cut it): its keys and values are repeated
for those verdicts, whose continuations are then fed together, each row attending to the prompt and
its own continuation only — the numbers of one unpadded pass per verdict.
"""

from collections.abc import Sequence

import torch

from evals.scoring.judges.protocol import CallFailure, Completion, JudgeRequest, JudgeStats, Messages
from evals.scoring.loading import LoadedModel

_CLOSE = "]]"


class LocalJudge:
    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.identity = f"local:{lm.weights_sha256}"
        self.stats = JudgeStats()

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[Completion | CallFailure]:
        scores: list[dict[str, float]] = []
        for request in requests:
            prompt_ids = self._prompt_ids(request)
            by_length: dict[int, dict[str, list[int]]] = {}
            for verdict in request.verdicts:
                continuation = self._continuation_ids(verdict)
                by_length.setdefault(len(continuation), {})[verdict] = continuation
            score: dict[str, float] = {}
            for length, continuations in by_length.items():
                # Cut from the left to leave room for the continuation, as one pass per verdict would.
                kept = prompt_ids[-(self.lm.max_length - length) :]
                score |= self._shared_prompt_logprobs(kept, continuations)
            scores.append(score)
        self.stats.calls += len(requests)
        return [self._completion(request, score) for request, score in zip(requests, scores, strict=True)]

    def _prompt_ids(self, request: JudgeRequest) -> list[int]:
        text = _render(self.lm.tokenizer, request.messages) + request.verdict_prefix
        return self.lm.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def _continuation_ids(self, verdict: str) -> list[int]:
        return self.lm.tokenizer(verdict + _CLOSE, add_special_tokens=False, verbose=False)["input_ids"]

    @torch.inference_mode()
    def _shared_prompt_logprobs(self, prompt_ids: list[int], continuations: dict[str, list[int]]) -> dict[str, float]:
        """log p(continuation | prompt) of each verdict, the prompt run once (unpadded, one row)."""
        device = self.lm.device
        prompt = self.lm.model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
        first = torch.log_softmax(prompt.logits[0, -1].float(), dim=-1).cpu()
        verdicts = list(continuations)
        longest = max(len(ids) for ids in continuations.values())
        totals = {verdict: float(first[continuations[verdict][0]]) for verdict in verdicts}
        if longest == 1:
            return totals
        # Each continuation after its first token, right-padded: a row's pads come after every token
        # it is scored on, so under causal attention they change nothing.
        pad = self.lm.tokenizer.pad_token_id or 0
        fed = torch.full((len(verdicts), longest - 1), pad, dtype=torch.long)
        for row, verdict in enumerate(verdicts):
            ids = continuations[verdict][:-1]
            fed[row, : len(ids)] = torch.tensor(ids)
        cache = prompt.past_key_values
        cache.batch_repeat_interleave(len(verdicts))
        start = len(prompt_ids)
        positions = torch.arange(start, start + longest - 1).expand(len(verdicts), -1)
        logits = self.lm.model(
            input_ids=fed.to(device),
            past_key_values=cache,
            attention_mask=torch.ones((len(verdicts), start + longest - 1), dtype=torch.long, device=device),
            position_ids=positions.to(device),
        ).logits.float()
        log_softmax = torch.log_softmax(logits, dim=-1).cpu()
        for row, verdict in enumerate(verdicts):
            ids = continuations[verdict]
            totals[verdict] += float(sum(log_softmax[row, i - 1, ids[i]] for i in range(1, len(ids))))
        return totals

    def _completion(self, request: JudgeRequest, logprobs: dict[str, float]) -> Completion:
        values = torch.tensor([logprobs[verdict] for verdict in request.verdicts], dtype=torch.float64)
        probabilities = torch.softmax(values, dim=0).tolist()
        best = request.verdicts[int(torch.argmax(values))]
        text = f"{request.verdict_prefix}{best}{_CLOSE}"
        return Completion(text=text, probabilities=dict(zip(request.verdicts, probabilities, strict=True)))


def _render(tokenizer, messages: Messages) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(f"{turn['role']}: {turn['content']}" for turn in messages) + "\n\nassistant: "
