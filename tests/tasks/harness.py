"""lm-evaluation-harness run in-process on a local task file: the reference for task formats."""

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.defaults import DEFAULT_OTHER_SEED
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager


def write_task(folder: Path, name: str, docs: list[dict], body: str, *, train: list[dict] | None = None) -> Path:
    """A task folder as the harness's own: `docs.jsonl` (and `train.jsonl` with `train`, a split
    named `train`) beside `NAME.yaml` (`body` after the header)."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"test": docs} | ({"train": train} if train is not None else {})
    files = ""
    for split, rows in splits.items():
        data = folder / ("docs.jsonl" if split == "test" else f"{split}.jsonl")
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files += f"    {split}: {data}\n"
    task = folder / f"{name}.yaml"
    task.write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{files}test_split: test\n" + body
    )
    return task


def harness_requests(task: Path) -> list[list[tuple]]:
    """The requests the harness builds for each document of a task, in document order, without a
    model: its own task loading, seeded as `simple_evaluate` seeds it."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        loaded = TaskManager(include_path=str(task.parent), include_defaults=False).load([task.stem])
        harness_task = loaded["tasks"][task.stem]
        if harness_task.get_config("num_fewshot") is None:
            harness_task.set_config(key="num_fewshot", value=0)
        harness_task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)  # simple_evaluate's fewshot_random_seed
        harness_task.build_all_requests()
    requests: dict[int, list[tuple]] = {}
    for instance in harness_task.instances:
        requests.setdefault(instance.doc_id, []).append(tuple(instance.args))
    return [requests[doc_id] for doc_id in sorted(requests)]


def harness_samples(model_dir: Path, task: Path, *, max_length: int | None = None) -> list[dict]:
    """The harness's logged samples of one task, in document order."""
    name = task.stem
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        harness = HFLM(pretrained=str(model_dir), device="cpu", batch_size=4, max_length=max_length)
        results = simple_evaluate(
            model=harness,
            tasks=[name],
            task_manager=TaskManager(include_path=str(task.parent), include_defaults=False),
            log_samples=True,
            verbosity="ERROR",
        )
    return sorted(results["samples"][name], key=lambda sample: sample["doc_id"])
