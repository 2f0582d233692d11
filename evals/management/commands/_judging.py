"""The judge options of `manage.py evaluate --generate` and the judging of its answers.

Judging runs when `--judge-url` (an OpenAI-compatible base URL; the model from `--judge-model` or
$DRIFTBOARD_JUDGE_MODEL) or `--judge-local` (a causal-LM folder) is given. The API key is read
from $DRIFTBOARD_JUDGE_API_KEY only. Judgements are cached in `--judge-cache` (default
`$DRIFTBOARD_VAR_DIR/judgements.sqlite3`), so a re-run of the same answers makes no judge call.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from evals.scoring.errors import ScoringError
from evals.scoring.judges import EndpointSettings, Judge, JudgeSettings, LocalJudge, OpenAIJudge
from evals.scoring.judges.judging import MODES
from evals.scoring.judges.preference import DEFAULT_PREFERENCE_LIMIT
from evals.scoring.judges.reports import judge_report
from evals.scoring.judges.store import SqliteJudgementStore
from evals.scoring.loading import CAUSAL_LM, load_model


def add_judge_arguments(parser) -> None:
    parser.add_argument("--judge-url", help="with --generate: OpenAI-compatible judge API, e.g. http://judge:8000/v1")
    parser.add_argument("--judge-model", help="the judge model's name ($DRIFTBOARD_JUDGE_MODEL)")
    parser.add_argument("--judge-local", type=Path, help="a causal-LM folder to judge with, locally")
    parser.add_argument("--judge-mode", choices=MODES, default="pointwise", help="pairwise needs --baseline")
    parser.add_argument("--judge-repeats", type=int, default=1, help="judgements per sample (default 1)")
    parser.add_argument("--rubric", help="what the pointwise judge weighs (a sample's `rubric` overrides it)")
    parser.add_argument(
        "--judge-limit", type=float, default=DEFAULT_PREFERENCE_LIMIT, help="red below −limit (pairwise)"
    )
    parser.add_argument("--judge-cache", type=Path, help="SQLite file of cached judgements")


def judging_asked(options: dict) -> bool:
    return bool(options["judge_url"] or options["judge_local"])


def judge_answers(samples: list[dict], answers: list[str], baseline_answers: list[str] | None, options: dict) -> dict:
    """The judge's part of the report: metrics, comparison, judge_calls, judge_errors, judgements."""
    if options["judge_mode"] == "pairwise" and baseline_answers is None:
        raise CommandError("--judge-mode pairwise needs --baseline: the judge compares the two answers")
    try:
        judging = JudgeSettings(mode=options["judge_mode"], repeats=options["judge_repeats"], rubric=options["rubric"])
        judge = _judge(options)
    except (ScoringError, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    store = SqliteJudgementStore(options["judge_cache"] or Path(settings.VAR_DIR) / "judgements.sqlite3")
    try:
        report = judge_report(judge, store, judging, samples, answers, baseline_answers, limit=options["judge_limit"])
    finally:
        store.close()
    report["judge"] = judging.facts(judge)
    return report


def _judge(options: dict) -> Judge:
    if options["judge_local"]:
        return LocalJudge(load_model(options["judge_local"], kind=CAUSAL_LM, device=options["device"]))
    return OpenAIJudge(EndpointSettings.from_env(url=options["judge_url"], model=options["judge_model"]))


def merge_judge_report(report: dict, judged: dict) -> None:
    report["metrics"].update(judged.pop("metrics"))
    if judged["comparison"]:
        report.setdefault("comparison", {}).update(judged.pop("comparison"))
    else:
        judged.pop("comparison")
    report.update(judged)
