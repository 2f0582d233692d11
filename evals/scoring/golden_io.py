"""Golden dataset files: Parquet, JSONL or CSV in, validated samples and content hashes out.

Each sample is a dict {id, text, reference, category}, plus `prompt` (a string) or `messages` (a
list of {"role", "content"} chat turns, in a CSV or Parquet text cell as JSON) for generation.
A multiple-choice question adds `choices` (a list of at least two non-empty strings, or its JSON in
a text cell) and `answer` (the gold choice's index, or a list of them when several are right) to
its prompt or messages, the context the choices continue.
A conversation has `turns` instead of a prompt: the user messages the model answers one after the
other (each a string, or {"content", "reference"} with that turn's reference), optionally led by
one {"role": "system", "content"} message; stored as {"role", "content"[, "reference"]} objects.
A sample needs `text`, a prompt or messages (or text and one of them); `id` defaults to the row
index ("0", "1", …); empty `reference` / `category` become None, so the same data in any of the
three formats reads, and hashes, the same. Errors name the offending row, counting data rows from
1 (a CSV header is not a row).
"""

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evals.scoring.hashing import sample_sha256

COLUMNS = ("id", "text", "reference", "category")
COLUMN_WIDTHS = {"id": 200, "category": 100}  # the widest id and category a dataset may hold
# Optional columns of generation samples; a sample holds them only when it has them, so a dataset
# without prompts keeps its content hash.
PROMPT_COLUMNS = ("prompt", "messages")
# A multiple-choice question's columns, held only by samples that have them (as prompts are).
CHOICE_COLUMNS = ("choices", "answer")
# A conversation's column, held only by samples that have one.
TURNS_COLUMN = "turns"
# The most user turns a conversation may have: each is one more generation after the previous.
MAX_TURNS = 16
CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})
PARQUET, JSONL, CSV = "parquet", "jsonl", "csv"
_EXTENSIONS = {".parquet": PARQUET, ".pq": PARQUET, ".jsonl": JSONL, ".ndjson": JSONL, ".csv": CSV}
_PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH_ROWS = 1024
_BINARY_SNIFF_BYTES = 1024

Sample = dict[str, str | list[dict[str, str]] | list[str] | list[int] | None]

__all__ = [
    "GoldenFileError",
    "dataset_sha256",
    "canonical_bytes",
    "read_golden_file",
    "read_records",
    "validated_samples",
    "sample_hashes",
    "sample_sha256",
]


class GoldenFileError(ValueError):
    """The file cannot become a golden dataset; `row` is the 1-based data row, when known."""

    def __init__(self, message: str, row: int | None = None) -> None:
        # Undecodable bytes quoted from the file stay visible as escapes, and the message stays valid UTF-8.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message if row is None else f"row {row}: {message}")
        self.message = message
        self.row = row


def read_golden_file(
    source: bytes | str | Path,
    filename: str | None = None,
    *,
    max_rows: int | None = None,
    max_chars: int | None = None,
    prompts: bool = False,
) -> list[Sample]:
    """Samples of a Parquet, JSONL or CSV file given as a path or as bytes.

    The format comes from the file name's extension (`filename`, else the path), or from the
    content when there is no name. `max_rows` and `max_chars` (per text, reference, prompt or
    all of a sample's messages) refuse oversized files at the first row past the limit.
    `prompts` reads the `prompt` / `messages` columns too; without it a sample needs `text`.
    """
    text_columns = ("text", *PROMPT_COLUMNS, TURNS_COLUMN) if prompts else ("text",)
    records = read_records(source, filename, text_columns=text_columns, max_rows=max_rows)
    return validated_samples(records, max_chars=max_chars, prompts=prompts)


def read_records(
    source: bytes | str | Path,
    filename: str | None = None,
    *,
    max_rows: int | None,
    text_columns: tuple[str, ...] = ("text",),
) -> Iterator[Mapping]:
    """The raw rows of a file, before validation; the file must have one of `text_columns`.

    Every upload path reads through here, and `max_rows` has no default (None only for trusted local
    files), so no path can forget the row limit: a Parquet file is refused from the row count in its
    metadata before any row is read, a JSONL or CSV file at its first row past the limit.
    """
    if isinstance(source, (str, Path)):
        filename = filename or Path(source).name
        source = Path(source).read_bytes()
    if not source:
        raise GoldenFileError("the file is empty")
    file_format = _detect_format(source, filename)
    if file_format == PARQUET:
        return _read_parquet(source, text_columns, max_rows=max_rows)
    return _within_rows(_READERS[file_format](source, text_columns), max_rows)


def _within_rows(records: Iterator[Mapping], max_rows: int | None) -> Iterator[Mapping]:
    for row, record in enumerate(records, start=1):
        if max_rows is not None and row > max_rows:
            raise _too_many_rows(max_rows)
        yield record


def _too_many_rows(max_rows: int, held: int | None = None) -> GoldenFileError:
    holds = f" (the file holds {held})" if held is not None else ""
    return GoldenFileError(f"too many samples: a dataset may hold at most {max_rows}{holds}", row=max_rows + 1)


def validated_samples(
    records: Iterator[Mapping], *, max_chars: int | None = None, prompts: bool = False
) -> list[Sample]:
    """Rows (from `read_records`, which holds them to the row limit) checked and normalised into
    samples; errors name the 1-based row."""
    samples = _validated(records, max_chars=max_chars, prompts=prompts)
    if not samples:
        raise GoldenFileError("the file has no samples")
    return samples


def canonical_bytes(samples: list[Sample]) -> bytes:
    """One JSON object per line, keys sorted, UTF-8: the same dataset gives the same bytes."""
    lines = (
        json.dumps(
            {column: sample.get(column) for column in COLUMNS}
            | {
                column: sample[column]
                for column in (*PROMPT_COLUMNS, *CHOICE_COLUMNS, TURNS_COLUMN)
                if sample.get(column) is not None
            },
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        for sample in samples
    )
    return "\n".join(lines).encode("utf-8")


def dataset_sha256(samples: list[Sample]) -> str:
    return hashlib.sha256(canonical_bytes(samples)).hexdigest()


def sample_hashes(samples: list[Sample]) -> list[str]:
    """Per-sample hash of text, reference, prompt, messages, choices, answer and turns: the key under
    which scores are reused."""
    return [
        sample_sha256(
            sample["text"],
            sample["reference"],
            prompt=sample.get("prompt"),
            messages=sample.get("messages"),
            choices=sample.get("choices"),
            answer=sample.get("answer"),
            turns=sample.get(TURNS_COLUMN),
        )
        for sample in samples
    ]


def _detect_format(content: bytes, filename: str | None) -> str:
    if filename and Path(filename).suffix:
        suffix = Path(filename).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise GoldenFileError(f"unsupported file type {suffix!r}: use .parquet, .jsonl or .csv")
        return _EXTENSIONS[suffix]
    if content.startswith(_PARQUET_MAGIC):
        return PARQUET
    if content.lstrip().startswith(b"{"):
        return JSONL
    if b"\0" in content[:_BINARY_SNIFF_BYTES]:
        raise GoldenFileError("unsupported binary file: use Parquet, JSONL or CSV")
    return CSV


def _read_parquet(content: bytes, text_columns: tuple[str, ...], max_rows: int | None = None) -> Iterator[Mapping]:
    """Rows read a batch at a time, after the row count in the file's metadata was checked."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(content))
    except (pa.ArrowException, OSError) as error:
        raise GoldenFileError(f"not a readable Parquet file: {error}") from error
    if max_rows is not None and parquet.metadata.num_rows > max_rows:
        raise _too_many_rows(max_rows, parquet.metadata.num_rows)
    _require_text_column(parquet.schema_arrow.names, text_columns)
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as error:
        raise GoldenFileError(f"not a readable Parquet file: {error}") from error


def _read_jsonl(content: bytes, text_columns: tuple[str, ...]) -> Iterator[Mapping]:
    lines = [line for line in _decoded(content).splitlines() if line.strip()]
    for row, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:  # malformed, too deeply nested, a 5,000-digit integer
            raise GoldenFileError(f"invalid JSON: {error}", row=row) from error
        if not isinstance(record, dict):
            raise GoldenFileError("each line must be a JSON object", row=row)
        if row == 1:
            _require_text_column(record.keys(), text_columns)
        yield record


def _read_csv(content: bytes, text_columns: tuple[str, ...]) -> Iterator[Mapping]:
    reader = csv.DictReader(io.StringIO(_decoded(content), newline=""))
    _require_text_column(reader.fieldnames or [], text_columns)
    try:
        yield from reader
    except csv.Error as error:
        raise GoldenFileError(f"invalid CSV: {error}", row=reader.line_num) from error


_READERS = {PARQUET: _read_parquet, JSONL: _read_jsonl, CSV: _read_csv}


def _decoded(content: bytes) -> str:
    """Text with invalid UTF-8 bytes kept as lone surrogates, so the bad row can be named."""
    return content.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")


def _require_text_column(columns, text_columns: tuple[str, ...]) -> None:
    if not any(name in columns for name in text_columns):
        wanted = " or ".join(repr(name) for name in text_columns)
        raise GoldenFileError(f"no {wanted} column (found: {', '.join(map(str, columns)) or 'none'})")


def _validated(records: Iterator[Mapping], *, max_chars: int | None, prompts: bool) -> list[Sample]:
    samples: list[Sample] = []
    first_row_of_id: dict[str, int] = {}
    for index, record in enumerate(records):
        row = index + 1
        sample = _sample(record, index, row, prompts)
        _require_length_within(sample, max_chars, row)
        if sample["id"] in first_row_of_id:
            raise GoldenFileError(
                f"duplicate id {sample['id']!r} (first used in row {first_row_of_id[sample['id']]})",
                row=row,
            )
        first_row_of_id[sample["id"]] = row
        samples.append(sample)
    return samples


def _sample(record: Mapping, index: int, row: int, prompts: bool) -> Sample:
    asks = _asked(record, row) if prompts else {}
    text = record.get("text")
    if text in (None, "") and asks:
        text = None
    elif not isinstance(text, str):
        raise GoldenFileError("text must be a string" if text is not None else "empty text", row)
    elif not text.strip():
        raise GoldenFileError("empty text", row=row)
    sample = {
        "id": _optional_string(record.get("id"), row) or str(index),
        "text": text,
        "reference": _optional_string(record.get("reference"), row),
        "category": _optional_string(record.get("category"), row),
    }
    for column, value in sample.items():
        _require_utf8(column, value, row)
    return (
        sample
        | asks
        | (_multiple_choice(record, row, asked=any(column in asks for column in PROMPT_COLUMNS)) if prompts else {})
    )


def _multiple_choice(record: Mapping, row: int, *, asked: bool) -> Sample:
    """The sample's `choices` and `answer` (a sorted list of gold indices), checked; empty when it has neither."""
    choices, answer = record.get("choices"), record.get("answer")
    if choices in (None, "") and answer in (None, ""):
        return {}
    if choices in (None, "") or answer in (None, ""):
        given, missing = ("choices", "answer") if answer in (None, "") else ("answer", "choices")
        raise GoldenFileError(f"{given} needs {missing}: a multiple-choice question has both", row=row)
    if not asked:
        raise GoldenFileError("choices need a prompt or messages: the context they continue", row=row)
    choices = _json_cell("choices", choices, row)
    if not isinstance(choices, list) or len(choices) < 2:
        raise GoldenFileError("choices must be a list of at least 2 strings", row=row)
    for position, choice in enumerate(choices, start=1):
        if not isinstance(choice, str) or not choice.strip():
            raise GoldenFileError(f"choice {position} must be a non-empty string, got {choice!r}", row=row)
        _require_utf8(f"choice {position}", choice, row)
    return {"choices": choices, "answer": _gold_indices(_json_cell("answer", answer, row), len(choices), row)}


def _json_cell(column: str, value: object, row: int) -> object:
    """A list or number given as such (JSONL, Parquet) or as its JSON in a text cell (CSV)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as error:
        raise GoldenFileError(f"{column} is not valid JSON: {error}", row=row) from error


def _gold_indices(answer: object, n_choices: int, row: int) -> list[int]:
    indices = answer if isinstance(answer, list) else [answer]
    valid = bool(indices) and all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
    if not valid or not all(0 <= i < n_choices for i in indices):
        raise GoldenFileError(
            f"answer must be the index of the gold choice (0 to {n_choices - 1}) or a list of them, got {answer!r}",
            row=row,
        )
    return sorted(set(indices))


def _asked(record: Mapping, row: int) -> Sample:
    """The sample's `prompt`, `messages` or `turns`, checked; empty when it asks nothing."""
    prompt, messages, turns = record.get("prompt"), record.get("messages"), record.get(TURNS_COLUMN)
    if turns not in (None, ""):
        if prompt not in (None, "") or messages not in (None, ""):
            raise GoldenFileError("give either turns or a prompt / messages, not both", row=row)
        return {TURNS_COLUMN: _turns(turns, row)}
    if prompt in (None, "") and messages in (None, ""):
        return {}
    if prompt not in (None, "") and messages not in (None, ""):
        raise GoldenFileError("give either a prompt or messages, not both", row=row)
    if messages in (None, ""):
        if not isinstance(prompt, str):
            raise GoldenFileError(f"prompt must be a string, got {prompt!r}", row=row)
        if not prompt.strip():
            raise GoldenFileError("empty prompt", row=row)
        _require_utf8("prompt", prompt, row)
        return {"prompt": prompt}
    return {"messages": _chat_messages(messages, row)}


def _chat_messages(value: object, row: int) -> list[dict[str, str]]:
    """A list of {"role", "content"} turns, given as such or as a JSON string (CSV, Parquet text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as error:
            raise GoldenFileError(f"messages is not valid JSON: {error}", row=row) from error
    if not isinstance(value, list) or not value:
        raise GoldenFileError('messages must be a non-empty list of {"role": …, "content": …} objects', row=row)
    turns = []
    for position, turn in enumerate(value, start=1):
        if not isinstance(turn, Mapping) or set(turn) != {"role", "content"}:
            raise GoldenFileError(f'message {position} must be an object with exactly "role" and "content"', row=row)
        role, content = turn["role"], turn["content"]
        if role not in CHAT_ROLES:
            raise GoldenFileError(f"message {position} has role {role!r}: use one of {sorted(CHAT_ROLES)}", row=row)
        if not isinstance(content, str):
            raise GoldenFileError(f"message {position} content must be a string, got {content!r}", row=row)
        _require_utf8(f"message {position} content", content, row)
        turns.append({"role": role, "content": content})
    if not any(turn["content"].strip() for turn in turns):
        raise GoldenFileError("empty messages: every content is blank", row=row)
    return turns


def _turns(value: object, row: int) -> list[dict[str, str]]:
    """A conversation's turns (a list, or its JSON in a text cell), normalised to
    {"role", "content"[, "reference"]} objects."""
    value = _json_cell(TURNS_COLUMN, value, row)
    if not isinstance(value, list) or not value:
        raise GoldenFileError('turns must be a non-empty list of user messages (strings or {"content": …})', row=row)
    turns = []
    for position, turn in enumerate(value, start=1):
        turn = {"role": "user", "content": turn} if isinstance(turn, str) else turn
        if not isinstance(turn, Mapping) or not set(turn) <= {"role", "content", "reference"}:
            raise GoldenFileError(
                f'turn {position} must be a string or an object with "content" and optionally "reference" or "role"',
                row=row,
            )
        turns.append(_turn(dict(turn), position, row))
    users = sum(turn["role"] == "user" for turn in turns)
    if not users:
        raise GoldenFileError("turns need at least one user message", row=row)
    if users > MAX_TURNS:
        raise GoldenFileError(f"turns has {users} user messages, more than the {MAX_TURNS} allowed", row=row)
    return turns


def _turn(turn: dict, position: int, row: int) -> dict[str, str]:
    role, content, reference = turn.get("role", "user"), turn.get("content"), turn.get("reference")
    if role not in ("system", "user"):
        raise GoldenFileError(f"turn {position} has role {role!r}: use user (or system for the first)", row=row)
    if role == "system" and (position != 1 or reference is not None):
        raise GoldenFileError(
            f"turn {position}: only the first turn may be a system message, without a reference", row=row
        )
    if not isinstance(content, str) or not content.strip():
        raise GoldenFileError(f"turn {position} content must be a non-empty string, got {content!r}", row=row)
    _require_utf8(f"turn {position} content", content, row)
    normalised = {"role": role, "content": content}
    if reference not in (None, ""):
        if not isinstance(reference, str):
            raise GoldenFileError(f"turn {position} reference must be a string, got {reference!r}", row=row)
        _require_utf8(f"turn {position} reference", reference, row)
        normalised["reference"] = reference
    return normalised


def _require_length_within(sample: Sample, max_chars: int | None, row: int) -> None:
    lengths = {column: len(sample.get(column) or "") for column in ("text", "reference", "prompt")}
    lengths["messages"] = sum(len(turn["content"]) for turn in sample.get("messages") or ())
    lengths["choices"] = sum(len(choice) for choice in sample.get("choices") or ())
    lengths["turns"] = sum(len(turn["content"]) + len(turn.get("reference", "")) for turn in sample.get("turns") or ())
    for column, length in lengths.items():
        if max_chars is not None and length > max_chars:
            raise GoldenFileError(f"{column} has {length} characters, more than the {max_chars} allowed", row=row)


def _optional_string(value: object, row: int) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise GoldenFileError(f"expected text or an integer, got {value!r}", row=row)
    return str(value)


def _require_utf8(column: str, value: str | None, row: int) -> None:
    """Valid UTF-8 without NUL bytes (no database stores them), and no wider than the column."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise GoldenFileError(f"{column} is not valid UTF-8 (byte offset {error.start})", row=row) from error
    if "\x00" in value:
        raise GoldenFileError(f"{column} contains a NUL byte", row=row)
    if column in COLUMN_WIDTHS and len(value) > COLUMN_WIDTHS[column]:
        raise GoldenFileError(
            f"{column} has {len(value)} characters, more than the {COLUMN_WIDTHS[column]} allowed", row=row
        )
