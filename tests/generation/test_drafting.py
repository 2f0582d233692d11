"""Drafted greedy decoding: answers drafted from other weights' answers are token for token those of
plain greedy decoding and of `model.generate` alone, whatever the drafts, the batch size, the stop
strings and the EOS token (fp32 on CPU); the audit share is decoded plainly as well."""

import copy
import json
from dataclasses import replace

import pytest
import torch

from evals.scoring.generation import (
    EOS,
    LENGTH,
    STOP,
    Draft,
    Drafting,
    GenerationSettings,
    InMemoryGenerationStore,
    generate,
    generate_cached,
    generation_keys,
)
from evals.scoring.generation import cached as front_door
from evals.scoring.loading import CAUSAL_LM, LoadedModel, load_model
from tests.generation.greedy import alone

PROMPTS = 200
MAX_NEW = 16
# Batch size 1 decodes row by row: a slice of the prompts keeps the test short.
BATCH_ONE_PROMPTS = 40


@pytest.fixture(scope="module")
def many_prompts(demo_build) -> list[str]:
    """Starts of golden passages, 1 to 40 words long."""
    texts = [json.loads(line)["text"] for line in demo_build.golden.read_text().splitlines()]
    return [" ".join(texts[i % len(texts)].split()[: 1 + (i * 7) % 40]) for i in range(PROMPTS)]


@pytest.fixture(scope="module")
def candidate(demo_lm, many_prompts) -> LoadedModel:
    """The demo model with a fairly frequent answer token as its EOS: answers end by EOS, stop string or length."""
    plain = generate(demo_lm, many_prompts[:20], GenerationSettings(max_new_tokens=MAX_NEW))
    ids = [token for text in plain.texts for token in demo_lm.tokenizer(text, add_special_tokens=False)["input_ids"]]
    model = copy.deepcopy(demo_lm.model)
    model.generation_config.eos_token_id = sorted(set(ids), key=lambda token: (ids.count(token), token))[-6]
    return replace(demo_lm, model=model)


@pytest.fixture(scope="module")
def ending(demo_lm, many_prompts) -> GenerationSettings:
    plain = generate(demo_lm, many_prompts[:20], GenerationSettings(max_new_tokens=MAX_NEW))
    words = [word for text in plain.texts for word in text.split() if len(word) > 3]
    return GenerationSettings(max_new_tokens=MAX_NEW, stop=(sorted(set(words), key=lambda w: (words.count(w), w))[-2],))


def perturbed(lm: LoadedModel, scale: float, seed: int = 0) -> LoadedModel:
    """A copy whose every weight tensor has Gaussian noise of `scale` times its own spread added."""
    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() > 1:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * scale)
    return replace(lm, model=model)


def unrelated(lm: LoadedModel) -> LoadedModel:
    model = type(lm.model)(lm.model.config)
    torch.manual_seed(7)
    model.init_weights()
    model.generation_config = copy.deepcopy(lm.model.generation_config)
    return replace(lm, model=model.eval())


@pytest.fixture(scope="module")
def plain(candidate, many_prompts, ending):
    return generate(candidate, many_prompts, ending)


@pytest.fixture(scope="module")
def drafts(candidate, many_prompts, ending) -> dict[str, list[Draft]]:
    sources = {f"{int(scale * 100)} % noise": perturbed(candidate, scale) for scale in (0.01, 0.05, 0.3)}
    sources["an unrelated model"] = unrelated(candidate)
    found = {}
    for name, lm in sources.items():
        answers = generate(lm, many_prompts, ending)
        found[name] = [Draft(text, finish, name) for text, finish in zip(answers.texts, answers.finish, strict=True)]
    return found


@pytest.fixture(scope="module")
def generated_alone(candidate, many_prompts, ending) -> list[str]:
    return alone(candidate, many_prompts, ending)


def test_it_ends_the_reference_answers_every_way(plain, generated_alone):
    assert {EOS, STOP, LENGTH} <= set(plain.finish)
    assert plain.texts == generated_alone


@pytest.mark.parametrize("rows", [1, 7, 64])
@pytest.mark.parametrize("source", ["1 % noise", "5 % noise", "30 % noise", "an unrelated model"])
def test_it_drafts_the_answers_of_plain_greedy_decoding(
    candidate, many_prompts, ending, plain, generated_alone, drafts, batch_rows, source, rows
):
    count = BATCH_ONE_PROMPTS if rows == 1 else PROMPTS
    batch_rows(rows)
    drafted = generate(candidate, many_prompts[:count], ending, drafts=drafts[source][:count])
    assert drafted.texts == plain.texts[:count] == generated_alone[:count]
    assert drafted.tokens.tolist() == plain.tokens[:count].tolist()
    assert drafted.finish == plain.finish[:count]
    assert drafted.drafting.answers == sum(1 for draft in drafts[source][:count] if draft.text or draft.finish == EOS)
    assert drafted.drafting.accepted_tokens <= drafted.drafting.drafted_tokens


def test_it_accepts_more_of_the_closer_drafts_and_saves_forward_passes(candidate, many_prompts, ending, plain, drafts):
    accepted = {
        source: generate(candidate, many_prompts, ending, drafts=found).drafting.accepted_tokens
        for source, found in drafts.items()
    }
    assert accepted["1 % noise"] >= accepted["5 % noise"] >= accepted["30 % noise"] > accepted["an unrelated model"]
    own = [Draft(text, finish) for text, finish in zip(plain.texts, plain.finish, strict=True)]
    perfect = generate(candidate, many_prompts, ending, drafts=own)
    assert perfect.texts == plain.texts
    assert perfect.forward_passes * 3 <= plain.forward_passes
    assert perfect.drafting.forward_passes_saved == plain.forward_passes - perfect.forward_passes


def test_a_pool_whose_drafts_are_mostly_rejected_decodes_plainly(
    candidate, many_prompts, ending, plain, drafts, monkeypatch
):
    from evals.scoring.generation import pools

    poor = generate(candidate, many_prompts, ending, drafts=drafts["an unrelated model"])
    assert poor.texts == plain.texts
    assert poor.drafting.accepted_tokens < pools._DRAFT_KEPT_ABOVE * poor.drafting.drafted_tokens, "poor drafts"
    good = generate(candidate, many_prompts, ending, drafts=drafts["1 % noise"]).drafting
    monkeypatch.setattr(pools, "_DRAFT_KEPT_ABOVE", 0.0)  # never give up
    kept = generate(candidate, many_prompts, ending, drafts=drafts["an unrelated model"])
    assert kept.texts == plain.texts
    assert poor.drafting.drafted_tokens < kept.drafting.drafted_tokens, "the poor drafts were dropped"
    again = generate(candidate, many_prompts, ending, drafts=drafts["1 % noise"]).drafting
    assert again.drafted_tokens == good.drafted_tokens, "good drafts are never dropped"


def test_a_step_feeds_the_median_proposal():
    from evals.scoring.generation.pools import step_width

    assert step_width([]) == 0
    assert step_width([16, 16, 16, 1, 0]) == 16
    assert step_width([16, 0, 0, 1, 2]) == 1, "one row proposing many does not widen every row"
    assert step_width([4]) == 4


def test_it_says_where_an_answer_departs_from_its_draft(candidate, many_prompts, ending, plain):
    tokenizer = candidate.tokenizer
    long_ones = [i for i, tokens in enumerate(plain.tokens) if tokens >= 8][:10]
    drafts = []
    for index in long_ones:
        ids = tokenizer(plain.texts[index], add_special_tokens=False)["input_ids"]
        drafts.append(Draft(tokenizer.decode(ids[:4]) + " zebra zebra", LENGTH))
    prompts = [many_prompts[i] for i in long_ones]
    drafted = generate(candidate, prompts, ending, drafts=drafts)
    assert drafted.texts == [plain.texts[i] for i in long_ones]
    for text, draft, departs in zip(drafted.texts, drafts, drafted.departs_at_token, strict=True):
        answer_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        draft_ids = tokenizer(draft.text, add_special_tokens=False)["input_ids"]
        assert departs == next(k for k, (a, b) in enumerate(zip(answer_ids, draft_ids, strict=False)) if a != b)
    unchanged = generate(candidate, prompts, ending, drafts=[Draft(text, LENGTH) for text in drafted.texts])
    assert unchanged.departs_at_token == [None] * len(prompts)


def test_it_samples_without_drafts(candidate, many_prompts, drafts):
    sampled = GenerationSettings(max_new_tokens=MAX_NEW, do_sample=True, seed=2)
    alone = generate(candidate, many_prompts[:30], sampled)
    with_drafts = generate(candidate, many_prompts[:30], sampled, drafts=drafts["1 % noise"][:30])
    assert with_drafts.texts == alone.texts and with_drafts.forward_passes == alone.forward_passes
    assert with_drafts.drafting.drafted_tokens == 0


def test_it_audits_a_share_of_drafted_answers_and_stores_the_plain_one_on_a_mismatch(
    candidate, many_prompts, ending, plain, drafts, monkeypatch
):
    keys = generation_keys(candidate, many_prompts, ending)
    found = dict(zip(keys, drafts["5 % noise"], strict=True))
    drafting = Drafting(lookup=lambda wanted: {key: found[key] for key in wanted}, audit_every=4)
    audited = [key for key in dict.fromkeys(keys) if drafting.audits(key)]
    store = InMemoryGenerationStore()
    cached = generate_cached(candidate, many_prompts, store, ending, drafting=drafting)
    assert cached.texts == plain.texts
    assert drafting.stats.audited_answers == len(audited) > 0
    assert drafting.stats.audit_mismatches == 0
    assert {answer.drafted_from for answer in cached.answers} >= {"5 % noise"}

    real_generate = front_door.generate

    def drafts_go_wrong(lm, prompts, settings, **options):
        """Drafted rows answer wrongly; plain rows (the audit's, in the same call) answer rightly."""
        result = real_generate(lm, prompts, settings, **options)
        drafts = options.get("drafts") or [None] * len(prompts)
        texts = [text + "!" if draft is not None else text for text, draft in zip(result.texts, drafts, strict=True)]
        return replace(result, texts=texts)

    monkeypatch.setattr(front_door, "generate", drafts_go_wrong)
    wrong = Drafting(lookup=drafting.lookup, audit_every=4)
    again = generate_cached(candidate, many_prompts, InMemoryGenerationStore(), ending, drafting=wrong)
    assert wrong.stats.audit_mismatches == len(audited)
    by_key = dict(zip(again.keys, again.answers, strict=True))
    assert all(by_key[key].text == plain.texts[keys.index(key)] and not by_key[key].drafted_from for key in audited)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_it_drafts_on_cuda_in_fp32_exactly_and_in_bf16(demo_build, many_prompts, ending, drafts):
    gpu = load_model(demo_build.base, kind=CAUSAL_LM, device="cuda")
    assert gpu.dtype == torch.bfloat16
    fp32 = replace(gpu, model=copy.deepcopy(gpu.model).float(), dtype=torch.float32)
    plain32 = generate(fp32, many_prompts, ending)
    assert generate(fp32, many_prompts, ending, drafts=drafts["1 % noise"]).texts == plain32.texts
    plain16 = generate(gpu, many_prompts, ending)
    drafted16 = generate(gpu, many_prompts, ending, drafts=drafts["1 % noise"])
    # bf16 rounds a many-token verification step differently from a one-token step: a near-tie
    # between the two likeliest tokens may go the other way, so most answers, not all, are equal.
    assert sum(a == b for a, b in zip(drafted16.texts, plain16.texts, strict=True)) >= 0.9 * len(many_prompts)
    assert drafted16.forward_passes < plain16.forward_passes
