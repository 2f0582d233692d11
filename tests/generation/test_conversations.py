"""Multi-turn conversations: golden `turns` checked row by row and hashed only when present; the model
answers turn by turn after its own earlier answers, as `model.generate` does one turn at a time; the
answers are cached per turn under the conversation so far; answer scorers score every turn and
aggregate by the family's `turns` setting."""

import json

import pytest
import torch

from evals.scoring import golden_io
from evals.scoring.conversations import answer_conversations, turn_messages
from evals.scoring.generation import (
    Generation,
    GenerationSettings,
    InMemoryGenerationStore,
    cut_at_stop,
    generation_keys,
    prompt_token_ids,
)
from evals.scoring.scorers.generated_answers import AnswerChecks, AnswerOptions

MAX_NEW = 8


def conversations_of(prompts: list[str]) -> list[list[dict]]:
    """Two- and three-turn conversations, one led by a system message."""
    return [
        [
            {"role": "system", "content": "Continue the passage."},
            *[{"role": "user", "content": p} for p in prompts[:2]],
        ],
        [{"role": "user", "content": p} for p in prompts[2:5]],
        [{"role": "user", "content": prompts[5]}],
    ]


def answered_alone(lm, turns: list[dict], settings: GenerationSettings) -> list[str]:
    """Each user turn answered by `model.generate` on its own, the earlier answers fed back."""
    history, answers = [t for t in turns if t["role"] == "system"], []
    eos = lm.tokenizer.eos_token_id
    for turn in (t for t in turns if t["role"] == "user"):
        history = [*history, {"role": "user", "content": turn["content"]}]
        ids = prompt_token_ids(lm.tokenizer, [history], settings, lm.max_length - settings.max_new_tokens)[0]
        with torch.inference_mode():
            output = lm.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                pad_token_id=eos,
            )
        tokens = output[0, len(ids) :].tolist()
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        answers.append(cut_at_stop(lm.tokenizer.decode(tokens, skip_special_tokens=True), settings.stop))
        history = [*history, {"role": "assistant", "content": answers[-1]}]
    return answers


class CountingStore(InMemoryGenerationStore):
    def __init__(self) -> None:
        super().__init__()
        self.generated: list = []

    def put_many(self, generations) -> None:
        self.generated.extend(generations)
        super().put_many(generations)


def test_it_answers_turn_by_turn_like_model_generate_with_its_own_answers_fed_back(chat_lm, prompts):
    settings = GenerationSettings(max_new_tokens=MAX_NEW)
    conversations = conversations_of(prompts)
    result = answer_conversations(chat_lm, conversations, InMemoryGenerationStore(), settings, token_budget=300)
    assert [[a.text for a in answers] for answers in result.answers] == [
        answered_alone(chat_lm, turns, settings) for turns in conversations
    ]
    assert [len(answers) for answers in result.answers] == [2, 3, 1]


def test_it_regenerates_the_later_turns_only_when_an_earlier_answer_changed(chat_lm, prompts):
    settings = GenerationSettings(max_new_tokens=MAX_NEW)
    conversations = conversations_of(prompts)[:2]
    store = CountingStore()
    first = answer_conversations(chat_lm, conversations, store, settings)
    assert len(store.generated) == 5
    store.generated.clear()
    again = answer_conversations(chat_lm, conversations, store, settings)
    assert store.generated == [] and again.forward_passes == 0
    assert again.answers == first.answers

    # The stored first answer of the first conversation changes (other weights, say): its second
    # turn is asked anew, the other conversation's turns are found.
    asked_first = turn_messages(conversations[0], [])[0]
    store.generations[generation_keys(chat_lm, [asked_first], settings)[0]] = Generation(
        "A different answer.", 4, "eos"
    )
    changed = answer_conversations(chat_lm, conversations, store, settings)
    assert len(store.generated) == 1
    assert changed.answers[1] == first.answers[1]
    assert changed.answers[0][0].text == "A different answer."
    expected = turn_messages(conversations[0], ["A different answer."])[1]
    assert store.generated == generation_keys(chat_lm, [expected], settings)


@pytest.mark.parametrize(
    ("how", "exact", "length"), [("mean", 0.5, "mean"), ("last", 0.0, "last"), ("min", 0.0, "max")]
)
def test_it_scores_every_turn_and_aggregates_them_by_the_family_setting(chat_lm, prompts, how, exact, length):
    settings = GenerationSettings(max_new_tokens=MAX_NEW)
    turns = conversations_of(prompts)[0]
    own = answered_alone(chat_lm, turns, settings)
    turns = [turns[0], {**turns[1], "reference": own[0]}, {**turns[2], "reference": "not what it says"}]
    options = AnswerOptions.from_settings({"max_new_tokens": MAX_NEW, "turns": how}, store=InMemoryGenerationStore())
    scorer = AnswerChecks().configured(**vars(options))
    output = scorer.score(chat_lm, [{"id": "c", "turns": turns}], max_length=None, token_budget=None, progress=None)
    tokens = [len(chat_lm.tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in own]
    assert output.values[0]["exact_match"] == exact
    expected_length = {"mean": sum(tokens) / 2, "last": tokens[1], "max": max(tokens)}[length]
    assert output.values[0]["answer_length"] == pytest.approx(expected_length, abs=1)
    assert output.forward_passes > 0


def test_it_keys_a_non_default_aggregate_only(chat_lm):
    mean = AnswerChecks().configured(**vars(AnswerOptions.from_settings({})))
    lowest = AnswerChecks().configured(**vars(AnswerOptions.from_settings({"turns": "min"})))
    assert "turns" not in mean.config_facts(chat_lm) and lowest.config_facts(chat_lm)["turns"] == "min"


def read(rows: list[dict]):
    content = "\n".join(json.dumps(row) for row in rows).encode()
    return golden_io.read_golden_file(content, "golden.jsonl", prompts=True)


def test_it_reads_turns_and_hashes_them_only_when_present():
    plain = {"id": "p", "prompt": "Say hi.", "reference": "hi"}
    talk = {
        "id": "t",
        "turns": [{"role": "system", "content": "Be brief."}, "Hi?", {"content": "Bye?", "reference": "bye"}],
    }
    samples = read([plain, talk])
    assert samples[1]["turns"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "user", "content": "Bye?", "reference": "bye"},
    ]
    assert "turns" not in samples[0]
    assert golden_io.sample_hashes(samples)[0] == golden_io.sample_sha256(
        None, "hi", prompt="Say hi.", messages=None, choices=None, answer=None
    )
    other = read([plain, {**talk, "turns": ["Hi?", "Bye!"]}])
    assert golden_io.sample_hashes(other)[1] != golden_io.sample_hashes(samples)[1]
    assert golden_io.dataset_sha256(read([plain])) == golden_io.dataset_sha256([samples[0]])


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ([], "turns must be a non-empty list"),
        ("not json", "turns is not valid JSON"),
        ([{"role": "system", "content": "Only a system."}], "turns need at least one user message"),
        (["Hi?", {"role": "system", "content": "Late."}], "turn 2: only the first turn may be a system message"),
        (["Hi?", {"role": "assistant", "content": "Hello."}], "turn 2 has role 'assistant'"),
        (["Hi?", "  "], "turn 2 content must be a non-empty string"),
        (["Hi?", {"content": "Bye?", "reference": 3}], "turn 2 reference must be a string"),
        ([{"content": "Hi?", "answer": "x"}], "turn 1 must be a string or an object"),
        (["Hi?"] * 17, "turns has 17 user messages, more than the 16 allowed"),
    ],
)
def test_it_refuses_bad_turns_naming_the_row(turns, message):
    rows = [{"id": "a", "prompt": "Fine."}, {"id": "b", "turns": turns}]
    with pytest.raises(golden_io.GoldenFileError, match=f"^row 2: {message}"):
        read(rows)


def test_it_refuses_turns_beside_a_prompt():
    with pytest.raises(golden_io.GoldenFileError, match="row 1: give either turns or a prompt"):
        read([{"prompt": "Hi?", "turns": ["Hi?"]}])
