"""`manage.py evaluate --generate --baseline`: the candidate's greedy answers are drafted from the
baseline's, and are exactly the answers of plain decoding (--no-drafts); the report says what
drafting did."""

import json
import shutil
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from evals.scoring.demo_models import DEMO_CHAT_TEMPLATE
from tests.generation.test_cli_generate import evaluate

MAX_NEW_TOKENS = "24"
PROMPTS = 8
CONVERSATIONS, TURNS = 3, 2


@pytest.fixture(scope="module")
def prompt_file(demo_build, tmp_path_factory) -> Path:
    """Starts of golden passages as prompts, how each goes on as the reference."""
    rows = []
    for line in demo_build.golden.read_text().splitlines()[:PROMPTS]:
        words = json.loads(line)["text"].split()
        rows.append({"id": f"p{len(rows)}", "prompt": " ".join(words[:8]), "reference": " ".join(words[8:16])})
    path = tmp_path_factory.mktemp("drafting") / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def generate(demo_build, prompt_file: Path, weights: Path, baseline: Path, *args: str) -> dict:
    result = evaluate(
        "--weights",
        str(weights),
        "--baseline",
        str(baseline),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        MAX_NEW_TOKENS,
        "--json",
        *args,
    )
    assert result.returncode == 0, result.stderr
    assert "candidate" in result.stderr and "baseline" in result.stderr, "progress bars on stderr"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def plain(demo_build, prompt_file) -> dict:
    """The improved model against the base, decoded plainly."""
    return generate(demo_build, prompt_file, demo_build.improved, demo_build.base, "--no-drafts")


def test_drafted_answers_are_plain_greedy_answers_sooner(demo_build, prompt_file, plain):
    drafted = generate(demo_build, prompt_file, demo_build.improved, demo_build.base)

    assert [g["text"] for g in drafted["generations"]] == [g["text"] for g in plain["generations"]]
    assert drafted["baseline_generations"] == plain["baseline_generations"]
    assert drafted["metrics"] == plain["metrics"] and drafted["comparison"] == plain["comparison"]
    assert drafted["fingerprint"] == plain["fingerprint"]
    stats = drafted["drafting"]
    assert stats["answers"] == PROMPTS
    assert 0 < stats["accepted_tokens"] <= stats["drafted_tokens"], "the improved model keeps some base tokens"
    assert stats["forward_passes_saved"] > 0 and drafted["forward_passes"] < plain["forward_passes"]
    assert stats["audit_mismatches"] == 0
    changed = sum(
        mine["text"] != theirs["text"]
        for mine, theirs in zip(drafted["generations"], drafted["baseline_generations"], strict=True)
    )
    assert changed > 0 and stats["unchanged"] == PROMPTS - changed
    assert isinstance(stats["departs_at_token_median"], int | float) and stats["departs_at_token_median"] >= 0


def test_no_drafts_leaves_drafting_out_of_the_report(plain):
    assert "drafting" not in plain
    assert {"metrics", "generations", "baseline_generations", "comparison", "forward_passes"} <= set(plain)


def test_the_same_weights_draft_every_answer_unchanged(demo_build, prompt_file):
    report = generate(demo_build, prompt_file, demo_build.base, demo_build.base)

    assert report["generations"] == report["baseline_generations"]
    stats = report["drafting"]
    assert stats["unchanged"] == PROMPTS and stats["departs_at_token_median"] is None
    assert stats["answers"] == PROMPTS and stats["accepted_tokens"] > 0 and stats["forward_passes_saved"] > 0
    assert stats["accepted_tokens"] == stats["drafted_tokens"], "every draft token is accepted, a drafted EOS too"


def test_the_table_says_what_drafting_did(demo_build, prompt_file):
    drafted = evaluate(
        "--weights",
        str(demo_build.improved),
        "--baseline",
        str(demo_build.base),
        "--subset",
        str(prompt_file),
        "--generate",
        "--max-new-tokens",
        MAX_NEW_TOKENS,
    )
    assert drafted.returncode == 0, drafted.stderr
    line = next(line for line in drafted.stdout.splitlines() if "drafted from the baseline" in line)
    assert f"{PROMPTS} answers" in line and "draft tokens accepted" in line


@pytest.fixture(scope="module")
def chat_models(demo_build, tmp_path_factory) -> tuple[Path, Path]:
    """Copies of the base and improved models whose tokenizer has the demo's chat template."""
    folders = []
    for folder in (demo_build.base, demo_build.improved):
        copy = tmp_path_factory.mktemp("chat") / folder.name
        shutil.copytree(folder, copy)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(copy)
        tokenizer.chat_template = DEMO_CHAT_TEMPLATE
        tokenizer.save_pretrained(copy)
        folders.append(copy)
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def conversation_file(demo_build, tmp_path_factory) -> Path:
    """Golden passages as conversations: each user turn says six words, its reference the next six."""
    rows = []
    for line in demo_build.golden.read_text().splitlines()[:CONVERSATIONS]:
        words = json.loads(line)["text"].split()
        turns = [
            {
                "role": "user",
                "content": " ".join(words[12 * turn : 12 * turn + 6]),
                "reference": " ".join(words[12 * turn + 6 : 12 * turn + 12]),
            }
            for turn in range(TURNS)
        ]
        rows.append({"id": f"c{len(rows)}", "turns": turns})
    path = tmp_path_factory.mktemp("conversations") / "conversations.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_conversations_are_drafted_turn_by_turn(demo_build, chat_models, conversation_file):
    base, improved = chat_models
    same = generate(demo_build, conversation_file, base, base)
    assert same["drafting"]["answers"] == CONVERSATIONS * TURNS, "every turn drafted from the baseline's"
    assert same["drafting"]["unchanged"] == CONVERSATIONS * TURNS

    drafted = generate(demo_build, conversation_file, improved, base)
    plain = generate(demo_build, conversation_file, improved, base, "--no-drafts")
    assert [g["turns"] for g in drafted["generations"]] == [g["turns"] for g in plain["generations"]]
    assert drafted["drafting"]["answers"] >= CONVERSATIONS
    assert drafted["drafting"]["accepted_tokens"] > 0
