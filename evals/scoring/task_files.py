"""lm-evaluation-harness task files with local data, read into golden samples.

A task YAML names its data (`dataset_path: json|csv|parquet` with `dataset_kwargs.data_files`, or a
local folder of such files), the split to evaluate (`test_split`, else `validation_split`), how a
document becomes a question (`doc_to_text`, `doc_to_choice`, `doc_to_target`: a field name, a
Jinja template or, for choices, a list) and its `output_type`:

- `multiple_choice`: a sample per document with the context as `prompt`, its `choices` and the gold
  `answer`, scored by the `multiple-choice` scorer with the task's `target_delimiter`;
- `generate_until`: a sample per document with the context as `prompt` and the target as
  `reference`; `generation_kwargs.until` are the stop strings (default: the `fewshot_delimiter`).

The fields are computed as the harness's `ConfigurableTask` computes them (a template rendering
digits is an index, a rendered list is parsed as a Python literal). The context is the harness's
`fewshot_context`: the `description`, then `num_fewshot` solved documents (question,
`target_delimiter`, answer, `fewshot_delimiter`) drawn from the few-shot split by its sampler with
the harness's seed, then the question. Nothing executes and nothing is fetched: templates render in
Jinja's immutable sandbox with undefined names refused, and `!function`, remote datasets and URLs,
`include:` outside the file's folder and `gen_prefix` are refused with the line that asks for them.
Pure: no Django.
"""

import ast
import functools
import hashlib
import itertools
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml
from jinja2 import BaseLoader, StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evals.scoring.golden_io import Sample, validated_samples

MULTIPLE_CHOICE, GENERATE_UNTIL = "multiple_choice", "generate_until"
_LOCAL_BUILDERS = {"json": (".json", ".jsonl"), "csv": (".csv",), "parquet": (".parquet",)}
_HARNESS_DEFAULTS = {"target_delimiter": " ", "fewshot_delimiter": "\n\n", "description": ""}
_MAX_INCLUDES = 5
# simple_evaluate's fewshot_random_seed: one generator per task, drawn from document by document.
FEWSHOT_SEED = 1234
_FEWSHOT_SAMPLERS = ("default", "first_n")
# `fewshot_indices` is read and, as by the harness (which never hands it to its sampler), unused.
_FEWSHOT_KEYS = {
    "sampler",
    "split",
    "samples",
    "fewshot_indices",
    "doc_to_text",
    "doc_to_choice",
    "doc_to_target",
    "fewshot_delimiter",
    "target_delimiter",
}


class TaskFileError(ValueError):
    """The task file cannot become a golden dataset; the message names the line when it can."""


@dataclass(frozen=True)
class TaskSamples:
    """The samples of a task file, what it says about scoring them, and its content hash."""

    name: str
    output_type: str
    samples: list[Sample]
    sha256: str
    target_delimiter: str = " "
    until: list[str] = field(default_factory=list)
    num_fewshot: int = 0

    @property
    def recipe(self) -> dict:
        return {
            "task": self.name,
            "task_sha256": self.sha256,
            "output_type": self.output_type,
            "target_delimiter": self.target_delimiter,
            "until": self.until,
            "num_fewshot": self.num_fewshot,
        } | ({"fewshot_seed": FEWSHOT_SEED} if self.num_fewshot else {})


class _TaskLoader(yaml.SafeLoader):
    """Safe YAML where the harness's `!function` tag is refused with its line instead of run."""


def _refuse_function(loader: yaml.SafeLoader, node: yaml.Node) -> None:
    raise TaskFileError(
        f"line {node.start_mark.line + 1}: `!function {node.value}` is refused: a task file may not run code"
    )


_TaskLoader.add_constructor("!function", _refuse_function)

_TEMPLATES = ImmutableSandboxedEnvironment(loader=BaseLoader(), undefined=StrictUndefined, keep_trailing_newline=True)
_TEMPLATES.filters["regex_replace"] = lambda string, pattern, repl, count=0: re.sub(pattern, repl, string, count=count)


def read_task_file(
    path: Path | str,
    *,
    data_roots: list[Path] | None = None,
    max_rows: int | None = None,
    max_chars: int | None = None,
) -> TaskSamples:
    """The golden samples of the task file at `path`, held to `max_rows` documents and `max_chars`
    per field. `data_roots`: the folders its data files may lie in (None: anywhere on this
    machine, for an operator's command)."""
    path = Path(path)
    config = _config(path, depth=0)
    output_type = config.get("output_type", GENERATE_UNTIL)
    if output_type not in (MULTIPLE_CHOICE, GENERATE_UNTIL):
        raise TaskFileError(
            f"line {_line(path, 'output_type')}: output_type {output_type!r}: use multiple_choice or generate_until"
        )
    if config.get("gen_prefix") is not None:
        raise TaskFileError(f"line {_line(path, 'gen_prefix')}: gen_prefix is not read yet")
    docs = _documents(path, config, data_roots, max_rows)
    contexts = _contexts(path, config, docs, data_roots, max_rows)
    build = _multiple_choice if output_type == MULTIPLE_CHOICE else _generation
    records = [
        build(config, doc, index, context) for index, (doc, context) in enumerate(zip(docs, contexts, strict=True))
    ]
    return TaskSamples(
        name=str(config.get("task") or path.stem),
        output_type=output_type,
        samples=validated_samples(iter(records), max_chars=max_chars, prompts=True),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        target_delimiter=str(config["target_delimiter"]),
        until=_until(config) if output_type == GENERATE_UNTIL else [],
        num_fewshot=_shots(path, config),
    )


def _until(config: Mapping) -> list[str]:
    """The stop strings; without any, the harness stops at the few-shot delimiter."""
    until = (config.get("generation_kwargs") or {}).get("until", [config["fewshot_delimiter"]])
    return [until] if isinstance(until, str) else list(until or [])


def _config(path: Path, depth: int) -> dict:
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise TaskFileError(f"not a readable task file: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"cannot read the task file {path.name}: {error}") from error
    if not isinstance(config, dict):
        raise TaskFileError("a task file is a YAML mapping of settings")
    include = config.pop("include", None)
    if include is None:
        return _HARNESS_DEFAULTS | config
    included = (path.parent / str(include)).resolve()
    if depth >= _MAX_INCLUDES or not included.is_relative_to(path.parent.resolve()) or not included.is_file():
        raise TaskFileError(
            f"line {_line(path, 'include')}: include {include!r} is refused: only a file in the task file's folder"
        )
    return _config(included, depth + 1) | config


def _line(path: Path, key: str) -> int | str:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*:", line):
            return number
    return "?"


def _documents(path: Path, config: Mapping, roots: list[Path] | None, max_rows: int | None) -> list[dict]:
    split = config.get("test_split") or config.get("validation_split")
    if not split:
        raise TaskFileError("the task file names no test_split or validation_split to evaluate")
    return _split_documents(path, config, str(split), roots, max_rows)


def _split_documents(
    path: Path, config: Mapping, split: str, roots: list[Path] | None, max_rows: int | None
) -> list[dict]:
    files = [_local_file(path, file, roots) for file in _data_files(path, config, split)]
    docs = [doc for file in files for doc in _rows(file)]
    if max_rows is not None and len(docs) > max_rows:
        raise TaskFileError(
            f"too many documents: a dataset may hold at most {max_rows} (the split {split!r} holds {len(docs)})"
        )
    if not docs:
        raise TaskFileError(f"the split {split!r} has no documents")
    return docs


def _data_files(path: Path, config: Mapping, split: str) -> list[str]:
    dataset_path = str(config.get("dataset_path") or "")
    if dataset_path in _LOCAL_BUILDERS:
        data_files = (config.get("dataset_kwargs") or {}).get("data_files")
        if isinstance(data_files, Mapping):
            data_files = data_files.get(split)
        if not data_files:
            raise TaskFileError(
                f"line {_line(path, 'dataset_kwargs')}: no dataset_kwargs.data_files for split {split!r}"
            )
        return [str(file) for file in (data_files if isinstance(data_files, list) else [data_files])]
    folder = (path.parent / dataset_path).resolve() if dataset_path else None
    if folder is None or "://" in dataset_path or not folder.is_dir():
        raise TaskFileError(
            f"line {_line(path, 'dataset_path')}: dataset_path {dataset_path!r} is not local: use json, csv or "
            "parquet with dataset_kwargs.data_files, or a folder beside the task file; nothing is downloaded"
        )
    return [
        str(file)
        for suffixes in _LOCAL_BUILDERS.values()
        for file in sorted(folder.iterdir())
        if file.name.startswith(split) and file.suffix in suffixes
    ]


def _local_file(task: Path, name: str, roots: list[Path] | None) -> Path:
    if "://" in name:
        raise TaskFileError(f"line {_line(task, 'data_files')}: data file {name!r} is remote; nothing is downloaded")
    file = (task.parent / name).resolve()
    if roots is not None and not any(file.is_relative_to(root) for root in roots):
        raise TaskFileError(f"data file {Path(name).name!r} is outside the folders data may be imported from")
    if not file.is_file():
        raise TaskFileError(f"data file {Path(name).name!r} does not exist")
    return file


def _rows(file: Path) -> list[dict]:
    """A data file's rows, with the column types the harness's `datasets` loaders would infer."""
    try:
        if file.suffix == ".parquet":
            return pq.read_table(file).to_pylist()
        if file.suffix == ".csv":
            return pa_csv.read_csv(file).to_pylist()
        text = file.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as error:  # JSON: the message gives the line and column
        raise TaskFileError(f"data file {file.name!r} is not valid JSON: {error}") from error
    except (pa.ArrowException, OSError) as error:  # their messages may carry this machine's paths
        raise TaskFileError(f"data file {file.name!r} is not a readable {file.suffix} file") from error


def _field(config: Mapping, key: str, doc: Mapping, index: int | str) -> object:
    """`doc_to_text` / `doc_to_target` / `doc_to_choice` of one document, as the harness computes it."""
    spec = config.get(key)
    if spec is None:
        raise TaskFileError(f"the task file has no {key}")
    if not isinstance(spec, str):
        return spec
    if spec in doc:
        return doc[spec]
    try:
        rendered = _template(spec).render(**doc)
    except TemplateError as error:
        raise TaskFileError(f"{key} cannot render document {index}: {error}") from error
    if key == "doc_to_choice" or (rendered.startswith("[") and rendered.endswith("]") and key == "doc_to_target"):
        return _literal(key, rendered, index)
    if rendered.isdigit() and config.get("doc_to_choice") is not None:
        return int(rendered)
    return rendered


@functools.lru_cache(maxsize=64)
def _template(source: str) -> Template:
    return _TEMPLATES.from_string(source)


def _literal(key: str, rendered: str, index: int | str) -> object:
    try:
        return ast.literal_eval(rendered)
    except (ValueError, SyntaxError) as error:
        raise TaskFileError(f"{key} of document {index} is not a list: {rendered[:80]!r}") from error


def _choices(config: Mapping, doc: Mapping, index: int | str) -> object:
    choices = _field(config, "doc_to_choice", doc, index)
    return list(choices.values()) if isinstance(choices, Mapping) else choices


def _shots(path: Path, config: Mapping) -> int:
    shots = config.get("num_fewshot") or 0
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise TaskFileError(f"line {_line(path, 'num_fewshot')}: num_fewshot {shots!r} is not a count of documents")
    return shots


def _fewshot_config(path: Path, config: Mapping) -> dict:
    """The settings of the solved documents, as the harness's FewshotConfig: the task's own,
    overridden by `fewshot_config`."""
    overrides = config.get("fewshot_config") or {}
    unknown = sorted(set(overrides) - _FEWSHOT_KEYS) if isinstance(overrides, Mapping) else ["(not a mapping)"]
    if unknown:
        raise TaskFileError(f"line {_line(path, 'fewshot_config')}: fewshot_config {', '.join(unknown)} is not read")
    inherited = ("doc_to_text", "doc_to_choice", "doc_to_target", "fewshot_delimiter", "target_delimiter")
    fewshot = {key: config.get(key) for key in inherited} | {"split": config.get("fewshot_split")} | overrides
    if fewshot.get("sampler", "default") not in _FEWSHOT_SAMPLERS:
        raise TaskFileError(f"line {_line(path, 'sampler')}: sampler {fewshot['sampler']!r}: use default or first_n")
    return fewshot


def _contexts(
    path: Path, config: Mapping, docs: list[dict], roots: list[Path] | None, max_rows: int | None
) -> list[str]:
    """Each document's context as the harness's `fewshot_context` builds it, in document order."""
    shots = _shots(path, config)
    fewshot = _fewshot_config(path, config)
    pool = _fewshot_pool(path, config, fewshot, docs, roots, max_rows) if shots else []
    # The harness keeps a document out of its own context only when the few-shot split is the test split.
    exclude = fewshot["split"] == config.get("test_split")
    draw = _FewshotSampler(pool, fewshot, shots)
    contexts = []
    for index, doc in enumerate(docs):
        solved = "".join(_solved(config | fewshot, shot, where) for where, shot in draw(doc if exclude else None))
        contexts.append(_description(config, doc, index) + solved + _text(config, doc, index))
    return contexts


def _text(config: Mapping, doc: Mapping, index: int | str) -> str:
    text = _field(config, "doc_to_text", doc, index)
    if not isinstance(text, str):
        raise TaskFileError(
            f"doc_to_text of document {index} is {text!r}, not a text: a context per choice is not read yet"
        )
    return text


def _fewshot_pool(
    path: Path, config: Mapping, fewshot: Mapping, docs: list[dict], roots: list[Path] | None, max_rows: int | None
) -> list[dict]:
    """The few-shot split's documents; without one, `fewshot_config.samples`, else the training,
    validation or evaluated split, the harness's order."""
    if fewshot["split"] is None and fewshot.get("samples") is not None:
        return list(fewshot["samples"])
    split = fewshot["split"] or config.get("training_split") or config.get("validation_split")
    if split in (None, config.get("test_split") or config.get("validation_split")):
        return docs
    return _split_documents(path, config, str(split), roots, max_rows)


class _FewshotSampler:
    """The harness's ContextSampler (`default`) or FirstNSampler (`first_n`), seeded once: draws
    positions in the pool, which `random.sample` picks as it would the documents themselves."""

    def __init__(self, pool: list[dict], fewshot: Mapping, shots: int) -> None:
        self.pool, self.shots, self.first_n = pool, shots, fewshot.get("sampler") == "first_n"
        self.rnd = random.Random(FEWSHOT_SEED)

    def __call__(self, doc: dict | None) -> list[tuple[str, dict]]:
        if self.shots == 0:
            return []
        if self.shots + (0 if self.first_n or not doc else 1) > len(self.pool):
            raise TaskFileError(f"num_fewshot {self.shots}: the few-shot split holds only {len(self.pool)} documents")
        drawn = self.first(doc) if self.first_n else self.draw(doc)
        return [(f"{position} of the few-shot split", self.pool[position]) for position in drawn]

    def first(self, doc: dict | None) -> list[int]:
        kept = (position for position, shot in enumerate(self.pool) if doc is None or shot != doc)
        return self.enough(list(itertools.islice(kept, self.shots)))

    def draw(self, doc: dict | None) -> list[int]:
        if not doc:
            return self.rnd.sample(range(len(self.pool)), self.shots)
        drawn = self.rnd.sample(range(len(self.pool)), self.shots + 1)
        kept = [position for position in drawn if self.pool[position] != doc][: self.shots]
        if len(kept) == self.shots:
            return kept
        # Several copies of the document were drawn: the harness draws again from the pool without them.
        others = [position for position, shot in enumerate(self.pool) if shot != doc]
        return self.rnd.sample(self.enough(others), self.shots)

    def enough(self, positions: list[int]) -> list[int]:
        if len(positions) < self.shots:
            raise TaskFileError(
                f"num_fewshot {self.shots}: the few-shot split holds only {len(positions)} other documents"
            )
        return positions


def _description(config: Mapping, doc: Mapping, index: int) -> str:
    return str(_field(config, "description", doc, index)) if config.get("description") else ""


def _solved(config: Mapping, doc: Mapping, where: str) -> str:
    """A few-shot document with its answer: question, target delimiter, answer, few-shot delimiter."""
    question = _text(config, doc, where)
    target = _field(config, "doc_to_target", doc, where)
    if target is None or target == "":
        return question
    choices = _choices(config, doc, where) if config.get("doc_to_choice") else None
    if choices and isinstance(target, int):
        answer = choices[target] if -len(choices) <= target < len(choices) else None
    else:
        answer = target[0] if isinstance(target, list) and target else target
    if not isinstance(answer, str):
        raise TaskFileError(f"doc_to_target of document {where} gives no answer text: {target!r}")
    return question + str(config["target_delimiter"]) + answer + str(config["fewshot_delimiter"])


def _multiple_choice(config: Mapping, doc: Mapping, index: int, context: str) -> dict:
    choices = _choices(config, doc, index)
    target = _field(config, "doc_to_target", doc, index)
    if isinstance(target, str) and isinstance(choices, list) and target in choices:
        target = choices.index(target)
    return {"id": str(index), "prompt": context, "choices": choices, "answer": target}


def _generation(config: Mapping, doc: Mapping, index: int, context: str) -> dict:
    target = _field(config, "doc_to_target", doc, index)
    if isinstance(target, list):
        target = target[0] if target else ""
    if isinstance(target, int) and config.get("doc_to_choice") is not None:
        target = _field(config, "doc_to_choice", doc, index)[target]
    return {"id": str(index), "prompt": context, "reference": str(target)}
