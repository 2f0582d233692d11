"""A local judge: a Hugging Face causal LM scored without sampling (G-Eval style).

The conversation is rendered with the tokenizer's chat template (with the generation prompt), or
as `role: content` paragraphs for a model without one, followed by the reply's verdict prefix
(`Rating: [[`, `[[`). Each verdict's probability is that of the continuation `verdict]]`, read
from the model's next-token distributions and normalised over the verdicts, so a two-token
`10` competes fairly with `1`. The reply is the most probable verdict; a pointwise score is the
probability-weighted mean rating (`judging` reads `probabilities`).
"""

from collections.abc import Sequence

import torch

from evals.scoring.judges.protocol import CallFailure, Completion, JudgeRequest, JudgeStats, Messages
from evals.scoring.loading import LoadedModel

# (prompt, verdict) rows scored per forward pass.
_ROWS_PER_BATCH = 16
_CLOSE = "]]"


class LocalJudge:
    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.identity = f"local:{lm.weights_sha256}"
        self.stats = JudgeStats()

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[Completion | CallFailure]:
        rows = [(index, verdict) for index, request in enumerate(requests) for verdict in request.verdicts]
        sequences = [self._row_ids(requests[index], verdict) for index, verdict in rows]
        logprobs: list[float] = []
        for start in range(0, len(sequences), _ROWS_PER_BATCH):
            logprobs.extend(self._continuation_logprobs(sequences[start : start + _ROWS_PER_BATCH]))
        self.stats.calls += len(requests)
        scores: list[dict[str, float]] = [{} for _ in requests]
        for (index, verdict), logprob in zip(rows, logprobs, strict=True):
            scores[index][verdict] = logprob
        return [self._completion(request, score) for request, score in zip(requests, scores, strict=True)]

    def _completion(self, request: JudgeRequest, logprobs: dict[str, float]) -> Completion:
        values = torch.tensor([logprobs[verdict] for verdict in request.verdicts], dtype=torch.float64)
        probabilities = torch.softmax(values, dim=0).tolist()
        best = request.verdicts[int(torch.argmax(values))]
        text = f"{request.verdict_prefix}{best}{_CLOSE}"
        return Completion(text=text, probabilities=dict(zip(request.verdicts, probabilities, strict=True)))

    def _row_ids(self, request: JudgeRequest, verdict: str) -> tuple[list[int], int]:
        """Token ids of prompt + continuation, and how many of them are the continuation."""
        tokenizer = self.lm.tokenizer
        prompt_ids = tokenizer(
            _render(tokenizer, request.messages) + request.verdict_prefix, add_special_tokens=False, verbose=False
        )["input_ids"]
        continuation = tokenizer(verdict + _CLOSE, add_special_tokens=False, verbose=False)["input_ids"]
        room = self.lm.max_length - len(continuation)
        return prompt_ids[-room:] + continuation, len(continuation)

    @torch.inference_mode()
    def _continuation_logprobs(self, rows: list[tuple[list[int], int]]) -> list[float]:
        longest = max(len(ids) for ids, _ in rows)
        pad = self.lm.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for row, (ids, _) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = self.lm.model(
            input_ids=input_ids.to(self.lm.device), attention_mask=mask.to(self.lm.device)
        ).logits.float()
        log_softmax = torch.log_softmax(logits, dim=-1).cpu()
        totals = []
        for row, (ids, continuation) in enumerate(rows):
            positions = range(len(ids) - continuation, len(ids))
            totals.append(float(sum(log_softmax[row, position - 1, ids[position]] for position in positions)))
        return totals


def _render(tokenizer, messages: Messages) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(f"{turn['role']}: {turn['content']}" for turn in messages) + "\n\nassistant: "
