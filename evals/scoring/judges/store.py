"""A judgement store in one SQLite file, for the CLI and benchmarks: a re-run in a new process
finds the judgements of the last one. Nothing in it is secret: keys hold the judge's URL and model,
never its API key."""

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from evals.scoring.judges.judging import Judgement, JudgementKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgement (
    judge TEXT NOT NULL, template_version INTEGER NOT NULL, request_sha256 TEXT NOT NULL,
    judge_order INTEGER NOT NULL, repeat INTEGER NOT NULL,
    reply TEXT NOT NULL, value REAL, error TEXT,
    PRIMARY KEY (judge, template_version, request_sha256, judge_order, repeat)
)
"""
# SQLite's default limit of bound parameters is 32766; 5 per key.
_KEYS_PER_QUERY = 500


class SqliteJudgementStore:
    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._connection:
            self._connection.execute(_SCHEMA)

    def get_many(self, keys: Sequence[JudgementKey]) -> dict[JudgementKey, Judgement]:
        found: dict[JudgementKey, Judgement] = {}
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            where = " OR ".join(
                ["(judge = ? AND template_version = ? AND request_sha256 = ? AND judge_order = ? AND repeat = ?)"]
                * len(chunk)
            )
            with self._lock:
                rows = self._connection.execute(
                    f"SELECT judge, template_version, request_sha256, judge_order, repeat, reply, value, error "  # noqa: S608
                    f"FROM judgement WHERE {where}",
                    [part for key in chunk for part in key],
                ).fetchall()
            found.update({JudgementKey(*row[:5]): Judgement(*row[5:]) for row in rows})
        return found

    def put_many(self, judgements: Mapping[JudgementKey, Judgement]) -> None:
        rows = [(*key, j.reply, j.value, j.error) for key, j in judgements.items()]
        with self._lock, self._connection:
            self._connection.executemany("INSERT OR REPLACE INTO judgement VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self._connection.close()
