"""Judges on conversations (golden samples with `turns`): the model answers turn by turn after its own
earlier answers, and the judge reads the whole conversation with MT-Bench's multi-turn templates —
rating the answer to the last turn, or comparing the candidate's whole conversation with the
baseline's in both orders. The judgement's cache key covers every turn, so a changed first answer is
judged anew. Through the product: a family's judge run gives judge_score and judge_preference on its
conversations, the review page shows the judge's reply under a conversation, and real workers gate a
drifted model on them.

The judge is the local OpenAI-compatible server (tests/judges/conftest.py)."""

import copy
import io
import json
import re
import shutil
from dataclasses import replace

import pytest

from driftboard.queue_names import Queue
from evals.models import EvalRun, GoldenSample, Judgement, MetricSnapshot, Threshold
from evals.scoring.conversations import answer_conversations, turn_messages, user_turns
from evals.scoring.generation import (
    Generation,
    GenerationSettings,
    InMemoryGenerationStore,
    generation_keys,
    messages_of,
)
from evals.scoring.judges import InMemoryJudgementStore, JudgeSettings, items_from_samples
from evals.scoring.judges.judging import judgement_keys
from evals.scoring.loading import CAUSAL_LM, ModelFacts, load_model
from evals.scoring.scorers.judge_preference import JudgePreference
from evals.scoring.scorers.judge_score import JudgeScore
from evals.selectors import answers_compared
from evals.services import artifact_evaluate, dataset_import, engine
from evals.services.pipeline import family_create
from evals.services.thresholds import threshold_save
from registry.models import Artifact
from tests.conftest import wait_for
from tests.factories import ArtifactFactory, DatasetFactory
from tests.generation.test_cli_generate import evaluate
from tests.generation.test_conversations import answered_alone
from tests.judges.conftest import ok, trusted
from tests.judges.test_judge_preference_verdicts import facts_of, judged, scored
from tests.judges.test_judge_turns import (
    MT_BENCH_PAIR,
    MT_BENCH_PAIR_SYSTEM,
    MT_BENCH_REFERENCE,
    MT_BENCH_SINGLE,
    MT_BENCH_SINGLE_SYSTEM,
)
from tests.pipeline.test_worker_pipeline import register, settled

SETTINGS = GenerationSettings(max_new_tokens=8)
# The demo models continue passages: a conversation reads as one passage, each turn going on from the
# model's own last answer.
PASSAGE_TEMPLATE = (
    "{% for message in messages %}{% if not loop.first %} {% endif %}{{ message['content'] }}{% endfor %}"
)
GENERATION = {"max_new_tokens": 8}
HOSTILE_REPLY = "<script>window.pwned=1</script> The last answer is wrong. Rating: [[2]]"
_SINGLE_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)
_PAIR_ANSWER = re.compile(
    r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S
)
_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


def last_answer(prompt: str, side: str) -> str:
    """The answer to the last turn in one assistant's conversation of a multi-turn judge prompt."""
    start = prompt.rindex(f"### Assistant {side}:\n") + len(f"### Assistant {side}:\n")
    return prompt[start : prompt.index(f"\n\n<|The End of Assistant {side}'s Conversation with User|>", start)]


def last_reference(prompt: str) -> str:
    start = prompt.rindex("### Reference answer:\n") + len("### Reference answer:\n")
    return prompt[start : prompt.index("\n\n<|The End of Reference Answer|>", start)]


def last_turn_judge(body: dict, _number: int):
    """A judge of both kinds of prompt that grades only what it is asked to: a single answer against its
    reference, a conversation by its last answer against the last turn's reference. Rated 9 when they
    are equal, else 2 (with a reply that is hostile HTML); pairwise, the one side equal to the
    reference wins, else a tie."""
    system, prompt = (message["content"] for message in body["messages"])
    pairwise = '"[[A]]" if assistant A is better' in system
    if "<|The Start of Assistant A's Conversation with User|>" in prompt:
        reference = last_reference(prompt)
        answers = {side: last_answer(prompt, side) for side in ("A", "B") if pairwise or side == "A"}
    else:
        reference = _REFERENCE.search(prompt).group(1)
        answers = dict(_PAIR_ANSWER.findall(prompt)) if pairwise else {"A": _SINGLE_ANSWER.search(prompt).group(1)}
    if not pairwise:
        return ok("The last answer is right. Rating: [[9]]" if answers["A"] == reference else HOSTILE_REPLY)
    right = [side for side, answer in sorted(answers.items()) if answer == reference]
    return ok(f"Compared with the reference. [[{right[0] if len(right) == 1 else 'C'}]]")


def two_turn_request(system: str, template: str, **fields: str) -> list[dict]:
    """MT-Bench's multi-turn judge prompt (FastChat's published text) with a reference conversation."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": MT_BENCH_REFERENCE.format(**fields) + template.format(**fields)},
    ]


def sent_messages(judge_server) -> list[list[dict]]:
    return [request["messages"] for request in judge_server.requests]


# On the demo models, answering for themselves


@pytest.fixture(scope="module")
def chat_models(demo_build) -> dict:
    """The base and drifted demo models, each with a chat template on its own copy of the tokenizer."""
    models = {}
    for name in ("base", "drifted"):
        lm = load_model(getattr(demo_build, name), kind=CAUSAL_LM, device="cpu")
        tokenizer = copy.deepcopy(lm.tokenizer)
        tokenizer.chat_template = PASSAGE_TEMPLATE
        models[name] = replace(lm, tokenizer=tokenizer)
    return models


@pytest.fixture(scope="module")
def talks(demo_build, chat_models) -> tuple[list[dict], dict[str, list[list[str]]]]:
    """Two-turn conversations cut from golden passages, whose turns' references are the base model's own
    answers; and each model's answers to them, turn by turn, as `model.generate` gives them."""
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    words = [text.split() for text in texts if len(text.split()) >= 12][:4]
    conversations = [
        [{"role": "user", "content": " ".join(w[:6])}, {"role": "user", "content": " ".join(w[6:12])}] for w in words
    ]
    answers = {
        name: [answered_alone(lm, turns, SETTINGS) for turns in conversations] for name, lm in chat_models.items()
    }
    samples = [
        {
            "id": f"talk{i}",
            "turns": [{**turn, "reference": answer} for turn, answer in zip(turns, answers["base"][i], strict=True)],
        }
        for i, turns in enumerate(conversations)
    ]
    return samples, answers


def configured(scorer_type, judge_server, **settings):
    return scorer_type().configured(
        generation=SETTINGS,
        store=settings.pop("store", InMemoryGenerationStore()),
        judge=judge_server.judge(),
        judgements=settings.pop("judgements", InMemoryJudgementStore()),
        **settings,
    )


def score(scorer, lm, samples):
    return scorer.score(lm, samples, max_length=None, token_budget=None, progress=None)


def test_the_judge_rates_the_models_own_conversation_with_mt_benchs_multi_turn_prompt(judge_server, chat_models, talks):
    samples, answers = talks
    judge_server.replier = last_turn_judge
    single = {"id": "prompt", "prompt": "The river", "reference": "not what the model says"}

    output = score(configured(JudgeScore, judge_server), chat_models["drifted"], [*samples, single])

    for sample, own in zip(samples, answers["drifted"], strict=True):
        (first, second), (ref_1, ref_2) = user_turns(sample["turns"]), [t["reference"] for t in sample["turns"]]
        fields = {"question_1": first["content"], "question_2": second["content"], "answer_1": own[0]}
        fields |= {"answer_2": own[1], "ref_answer_1": ref_1, "ref_answer_2": ref_2}
        assert two_turn_request(MT_BENCH_SINGLE_SYSTEM, MT_BENCH_SINGLE, **fields) in sent_messages(judge_server)
    assert judge_server.calls == len(samples) + 1
    expected = [
        9.0 if own[1] == sample["turns"][1]["reference"] else 2.0
        for sample, own in zip(samples, answers["drifted"], strict=True)
    ]
    assert [value["judge_score"] for value in output.values] == [*expected, 2.0]
    assert [value["judged"] for value in output.values] == [1.0] * (len(samples) + 1)


def test_the_pairwise_judge_compares_both_whole_conversations_in_both_orders(judge_server, chat_models, talks):
    samples, answers = talks
    judge_server.replier = last_turn_judge
    scorer = configured(JudgePreference, judge_server, baseline=chat_models["base"])

    output = score(scorer, chat_models["drifted"], samples)

    sent = sent_messages(judge_server)
    for sample, mine, theirs in zip(samples, answers["drifted"], answers["base"], strict=True):
        (first, second), (ref_1, ref_2) = user_turns(sample["turns"]), [t["reference"] for t in sample["turns"]]
        fields = {"question_1": first["content"], "question_2": second["content"]}
        fields |= {"ref_answer_1": ref_1, "ref_answer_2": ref_2}
        in_order = fields | {
            "answer_a_1": mine[0],
            "answer_a_2": mine[1],
            "answer_b_1": theirs[0],
            "answer_b_2": theirs[1],
        }
        reversed_ = fields | {
            "answer_a_1": theirs[0],
            "answer_a_2": theirs[1],
            "answer_b_1": mine[0],
            "answer_b_2": mine[1],
        }
        assert two_turn_request(MT_BENCH_PAIR_SYSTEM, MT_BENCH_PAIR, **in_order) in sent
        assert two_turn_request(MT_BENCH_PAIR_SYSTEM, MT_BENCH_PAIR, **reversed_) in sent
    assert judge_server.calls == 2 * len(samples)
    # The baseline's last answers are the references: the drifted model ties where it says the same.
    expected = [
        0.0 if mine[1] == theirs[1] else -1.0 for mine, theirs in zip(answers["drifted"], answers["base"], strict=True)
    ]
    assert [value["judge_preference"] for value in output.values] == expected


def test_the_cache_key_covers_the_whole_conversation(judge_server, chat_models, talks):
    samples, answers = talks
    conversation = samples[0]
    first, second = answers["drifted"][0]
    pointwise, pairwise = JudgeSettings(mode="pointwise"), JudgeSettings(mode="pairwise")

    def keys(mine, theirs=None, settings=pointwise):
        item = items_from_samples([conversation], [mine], None if theirs is None else [theirs])[0]
        return judgement_keys("judge", item, settings)

    assert keys([first, second]) == keys([first, second])
    assert set(keys(["A different first answer.", second])).isdisjoint(keys([first, second]))
    base = answers["base"][0]
    assert set(keys([first, second], ["Another.", base[1]], pairwise)).isdisjoint(keys([first, second], base, pairwise))
    # A pointwise judge reads no baseline: the baseline's answers do not enter its key.
    assert keys([first, second], ["Another.", base[1]]) == keys([first, second], base)

    # Through the scorer: the same stored answers are judged once; a changed first answer regenerates
    # the second turn after it and is judged anew.
    judge_server.replier = last_turn_judge
    store, judgements = InMemoryGenerationStore(), InMemoryJudgementStore()
    scorer = configured(JudgeScore, judge_server, store=store, judgements=judgements)
    lm = chat_models["drifted"]
    score(scorer, lm, samples)
    score(scorer, lm, samples)
    assert judge_server.calls == len(samples)

    asked_first = turn_messages(conversation["turns"], [])[0]
    (key,) = generation_keys(lm, [asked_first], SETTINGS)
    store.put_many({key: Generation(text="A different first answer.", tokens=4, finish="stop")})
    score(scorer, lm, samples)

    assert judge_server.calls == len(samples) + 1
    regenerated = answer_conversations(lm, [conversation["turns"]], store, SETTINGS).answers[0]
    assert regenerated[0].text == "A different first answer."
    (first_turn, second_turn) = conversation["turns"]
    fields = {"question_1": first_turn["content"], "question_2": second_turn["content"]}
    fields |= {"answer_1": "A different first answer.", "answer_2": regenerated[1].text}
    fields |= {"ref_answer_1": first_turn["reference"], "ref_answer_2": second_turn["reference"]}
    assert sent_messages(judge_server)[len(samples) :] == [
        two_turn_request(MT_BENCH_SINGLE_SYSTEM, MT_BENCH_SINGLE, **fields)
    ]


# A family with a conversation dataset, judged by the judge run

PROMPTS = {0: ("Name the capital of France.", "Paris."), 1: ("What is 2 + 2?", "4")}
TALKS = {
    2: [("Which city is the capital of France?", "Paris."), ("And its river?", "The Seine.")],
    3: [("Which planet is red?", "Mars."), ("How many moons has it?", "Two.")],
    4: [("Name a primary colour.", "Red."), ("And another one?", "Blue.")],
}
# position: the candidate's answers (a conversation's, turn by turn)
CANDIDATE = {
    0: "Paris.",
    1: "5",
    # A different first answer, the right last one: rated on the last turn, it is right.
    2: ["Paris, in France.", "The Seine."],
    3: ["Mars.", "<b>Seven</b> moons."],
    4: ["Red.", "Blue."],
}
BASELINE = {
    **{position: reference for position, (_, reference) in PROMPTS.items()},
    **{position: [reference for _, reference in turns] for position, turns in TALKS.items()},
}


def talk_turns(position: int) -> list[dict]:
    return [{"role": "user", "content": question, "reference": reference} for question, reference in TALKS[position]]


def store_conversation_answers(artifact: Artifact, dataset, answers: dict) -> None:
    """The artifact's answers stored as its scoring run stores them: a prompt's under the prompt, each turn
    of a conversation under the messages asking it, the artifact's own earlier answers included."""
    facts = ModelFacts.from_dict(facts_of(artifact))
    stored = {}
    for sample in engine.dataset_samples(dataset):
        said = answers[sample["position"]]
        if sample["turns"]:
            asked = [turn_messages(sample["turns"], said[:turn])[turn] for turn in range(len(said))]
        else:
            asked, said = [messages_of(sample)], [said]
        for key, text in zip(generation_keys(facts, asked, SETTINGS), said, strict=True):
            stored[key] = Generation(text=text, tokens=len(text.split()), finish="stop")
    engine.DatabaseGenerationStore().put_many(stored)


@pytest.fixture
def talking_family(db, judge_server):
    family = family_create(
        slug="talking",
        kind="causal-lm",
        datasets=["talks"],
        scorers=["judge-score", "judge-preference"],
        generation=GENERATION,
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 4},
    )
    dataset = DatasetFactory(name="talks", samples=len(PROMPTS) + len(TALKS))
    samples = list(GoldenSample.objects.filter(dataset=dataset))
    for sample in samples:
        if sample.position in PROMPTS:
            sample.text, (sample.prompt, sample.reference) = "", PROMPTS[sample.position]
        else:
            sample.text, sample.turns = "", talk_turns(sample.position)
    GoldenSample.objects.bulk_update(samples, ["text", "prompt", "reference", "turns"])
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    scored(baseline, dataset)
    store_conversation_answers(baseline, dataset, BASELINE)
    judge_server.replier = last_turn_judge
    return family, dataset, baseline


def test_a_familys_judge_run_scores_its_conversations_and_the_review_page_shows_the_reply(
    talking_family, judge_server, client, user
):
    family, dataset, baseline = talking_family
    judged(baseline, dataset)
    calls = judge_server.calls
    candidate = ArtifactFactory(family=family, status=Artifact.Status.SCORING, parent=baseline)
    scored(candidate, dataset)
    store_conversation_answers(candidate, dataset, CANDIDATE)

    run, result = judged(candidate, dataset)

    positions, numerators, denominators = result.arrays["judge_score"]
    assert positions.tolist() == [0, 1, 2, 3, 4] and denominators.tolist() == [1.0] * 5
    assert numerators.tolist() == [9.0, 2.0, 9.0, 2.0, 9.0]
    positions, preferences, _ = result.arrays["judge_preference"]
    assert positions.tolist() == [0, 1, 2, 3, 4] and preferences.tolist() == [0.0, -1.0, 0.0, -1.0, 0.0]
    assert (run.samples_done, run.samples_total) == (5, 5)
    # Pointwise, the answers the baseline gave too (positions 0 and 4) were judged with the baseline's;
    # a conversation whose first answer differs (2) is a new judgement. Pairwise, both orders of each.
    assert judge_server.calls - calls == 3 + 2 * 5
    (first, second) = TALKS[3]
    rated = {
        "question_1": first[0],
        "question_2": second[0],
        "answer_1": "Mars.",
        "answer_2": "<b>Seven</b> moons.",
        "ref_answer_1": first[1],
        "ref_answer_2": second[1],
    }
    assert two_turn_request(MT_BENCH_SINGLE_SYSTEM, MT_BENCH_SINGLE, **rated) in sent_messages(judge_server)

    # Judged again: every judgement is found in the cache.
    judged(candidate, dataset)
    assert judge_server.calls - calls == 13

    # The review page: the judge's reply under the conversation, found again from the stored answers.
    snapshots = {s.artifact_id: s for s in MetricSnapshot.objects.filter(metric="judge_score", dataset=dataset)}
    rows = {row.position: row for row in answers_compared(snapshots[candidate.pk], snapshots[baseline.pk], [2, 3])}
    assert [(reply.value, reply.reply) for reply in rows[3].candidate_judged] == [(2.0, HOSTILE_REPLY)]
    assert [reply.value for reply in rows[3].baseline_judged] == [9.0]
    assert [reply.value for reply in rows[2].candidate_judged] == [9.0]
    assert [turn.candidate.text for turn in rows[3].turns] == CANDIDATE[3]

    artifact_evaluate(artifact=candidate)
    client.force_login(user)
    content = client.get(f"{candidate.get_absolute_url()}?metric=judge_score&dataset={dataset.pk}").content.decode()
    section = content[content.index('<section class="card" id="answers">') :]
    article = section[section.index('data-sample-id="s3"') :]
    article = article[: article.index("</article>")]
    judged_part = article[article.index('data-part="conversation-judged"') :]
    assert 'data-judged="candidate"' in judged_part and 'data-judged="baseline"' in judged_part
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt; The last answer is wrong." in judged_part
    assert "&lt;b&gt;Seven&lt;/b&gt; moons." in article
    assert "<script>window.pwned" not in content and "<b>Seven</b>" not in content


# On real workers

TALK_COUNT = 6


def with_chat_template(folder, target):
    """A copy of a demo model folder whose tokenizer has a chat template (it answers conversations)."""
    shutil.copytree(folder, target)
    config = target / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "chat_template": PASSAGE_TEMPLATE}))
    return target


@pytest.mark.worker
def test_on_real_workers_a_drifted_models_conversations_are_judged_and_halt_it(
    celery_worker_factory, api_client, transactional_db, demo_build, import_root, judge_server
):
    folders = {
        name: with_chat_template(getattr(demo_build, name), import_root / f"chat-{name}")
        for name in ("base", "drifted")
    }
    base_lm = load_model(folders["base"], kind=CAUSAL_LM, device="cpu")
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    words = [text.split() for text in texts if len(text.split()) >= 12]
    asked = [
        [{"role": "user", "content": " ".join(w[:6])}, {"role": "user", "content": " ".join(w[6:12])}] for w in words
    ]
    own = answer_conversations(base_lm, asked, InMemoryGenerationStore(), SETTINGS).answers
    # The base model's own answers are the references: conversations it answers on every turn.
    answered = [i for i, answers in enumerate(own) if all(answer.text.strip() for answer in answers)][:TALK_COUNT]
    conversations = [asked[i] for i in answered]
    references = [[answer.text for answer in own[i]] for i in answered]
    lines = [
        json.dumps({"id": f"talk{i}", "turns": [{**turn, "reference": r} for turn, r in zip(turns, refs, strict=True)]})
        for i, (turns, refs) in enumerate(zip(conversations, references, strict=True))
    ]
    dataset_import(name="talk-golden", filename="talks.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    judge_server.replier = last_turn_judge
    family = family_create(
        slug="talkative",
        kind="causal-lm",
        base_path=str(folders["base"]),
        datasets=["talk-golden"],
        scorers=["judge-score", "judge-preference"],
        generation=GENERATION,
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 4},
    )
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="judge_score",
            rule=Threshold.Rule.RELATIVE,
            limit=0.1,
            severity=Threshold.Severity.BLOCK,
            owner="tests",
            rationale="The judge must not rate the conversations much lower.",
        ),
        user=None,
        reason="test",
    )
    identity = f"openai:{judge_server.url}|judge-test"
    trusted(family, mode="pointwise", identity=identity)
    trusted(family, mode="pairwise", identity=identity)
    celery_worker_factory(queues=(Queue.SCORING, Queue.JUDGE, Queue.PUBLISH))

    base = settled(register(api_client, family, folders["base"], "c" * 40))
    assert (base.status, base.stage) == ("promoted", "production")
    assert MetricSnapshot.objects.get(artifact=base, metric="judge_score").value == 9.0

    drifted = settled(register(api_client, family, folders["drifted"], "d" * 40, branch="finetune"))
    wait_for(lambda: drifted.verdicts.filter(metric="judge_preference").exists(), timeout=60, message="the verdicts")
    scores = MetricSnapshot.objects.get(artifact=drifted, metric="judge_score")
    assert sorted(scores.arrays()[0].tolist()) == list(range(TALK_COUNT))
    preference = MetricSnapshot.objects.get(artifact=drifted, metric="judge_preference")
    assert sorted(preference.arrays()[0].tolist()) == list(range(TALK_COUNT))
    assert EvalRun.objects.get(artifact=drifted, kind="judge").judging["stats"]["judge_errors"] == 0
    verdict = drifted.verdicts.get(metric="judge_score")
    assert (verdict.outcome, drifted.status) == ("red", "halted"), verdict.reasons

    # The judge read the drifted model's own conversations, each turn as it answers after its own
    # earlier answers, in MT-Bench's multi-turn prompt.
    drifted_lm = load_model(folders["drifted"], kind=CAUSAL_LM, device="cpu")
    theirs = answer_conversations(drifted_lm, conversations, InMemoryGenerationStore(), SETTINGS).answers
    sent = sent_messages(judge_server)
    for turns, answers, refs in zip(conversations, theirs, references, strict=True):
        fields = {"question_1": turns[0]["content"], "question_2": turns[1]["content"]}
        fields |= {"answer_1": answers[0].text, "answer_2": answers[1].text}
        fields |= {"ref_answer_1": refs[0], "ref_answer_2": refs[1]}
        assert two_turn_request(MT_BENCH_SINGLE_SYSTEM, MT_BENCH_SINGLE, **fields) in sent
    assert Judgement.objects.count() == judge_server.calls


# `manage.py evaluate --generate` on a golden file with turns


def test_the_cli_answers_conversations_turn_by_turn_reports_each_turn_and_judges_them_whole(
    judge_server, demo_build, tmp_path
):
    folder = with_chat_template(demo_build.drifted, tmp_path / "chat-drifted")
    lm = load_model(folder, kind=CAUSAL_LM, device="cpu")
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    words = [text.split() for text in texts if len(text.split()) >= 12][:3]
    conversations = [
        [{"role": "user", "content": " ".join(w[:6])}, {"role": "user", "content": " ".join(w[6:12])}] for w in words
    ]
    own = [
        [a.text for a in answers]
        for answers in answer_conversations(lm, conversations, InMemoryGenerationStore(), SETTINGS).answers
    ]
    # The first conversation's first turn is answered right (its reference is the model's own answer),
    # its second turn wrong; the others have a reference on their second turn only, which they miss.
    rows = [
        {
            "id": "talk0",
            "turns": [{**conversations[0][0], "reference": own[0][0]}, {**conversations[0][1], "reference": "no"}],
        },
        *[
            {"id": f"talk{i}", "turns": [conversations[i][0], {**conversations[i][1], "reference": "no"}]}
            for i in (1, 2)
        ],
        {"id": "prompt", "prompt": " ".join(words[0][:6]), "reference": "no"},
    ]
    golden = tmp_path / "talks.jsonl"
    golden.write_text("\n".join(json.dumps(row) for row in rows))
    judge_server.replier = last_turn_judge

    result = evaluate(
        "--weights",
        str(folder),
        "--subset",
        str(golden),
        "--generate",
        "--max-new-tokens",
        "8",
        "--json",
        "--judge-url",
        judge_server.url,
        "--judge-model",
        "judge-test",
        "--judge-cache",
        str(tmp_path / "j.sqlite3"),
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [g.get("turns") for g in report["generations"]] == [*own, None]
    assert [g["text"] for g in report["generations"][:3]] == [answers[-1] for answers in own]
    assert report["samples"] == 4
    # exact_match: each conversation the mean of its turns that have a reference, then the prompt.
    assert report["metrics"]["exact_match"] == pytest.approx((0.5 + 0.0 + 0.0 + 0.0) / 4)
    assert report["per_turn"]["1"]["exact_match"] == 1.0 and report["per_turn"]["1"]["conversations"] == 3
    assert report["per_turn"]["2"]["exact_match"] == 0.0 and report["per_turn"]["2"]["conversations"] == 3
    assert report["judge_calls"] == 4 == judge_server.calls
    first = rows[0]["turns"]
    fields = {"question_1": first[0]["content"], "question_2": first[1]["content"], "answer_1": own[0][0]}
    fields |= {"answer_2": own[0][1], "ref_answer_1": own[0][0], "ref_answer_2": "no"}
    assert two_turn_request(MT_BENCH_SINGLE_SYSTEM, MT_BENCH_SINGLE, **fields) in sent_messages(judge_server)
    assert report["metrics"]["judge_score"] == 2.0
