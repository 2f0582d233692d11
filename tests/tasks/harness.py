"""lm-evaluation-harness run in-process on a local task file: the reference for task formats."""

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager


def write_task(folder: Path, name: str, docs: list[dict], body: str) -> Path:
    """A task folder as the harness's own: `docs.jsonl` beside `NAME.yaml` (`body` after the header)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    task = folder / f"{name}.yaml"
    header = f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    task.write_text(header + body)
    return task


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
