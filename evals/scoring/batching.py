"""Token-budget batching, CPU streams and per-sample progress, shared by the scorers."""

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

Item = TypeVar("Item")
Result = TypeVar("Result")

# Padded tokens per forward pass. On CPU, larger batches overflow the caches and run slower per
# token; on GPU this keeps the activations of a ~1B-parameter model well inside 40 GB.
_DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}

ProgressCallback = Callable[[int], None]


def default_token_budget(device: torch.device) -> int:
    return _DEFAULT_TOKEN_BUDGET.get(device.type, _DEFAULT_TOKEN_BUDGET["cpu"])


def stream_count(device: torch.device) -> int:
    """How many batches `map_batches` computes side by side on `device`."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def budget_batches(lengths_descending: np.ndarray, token_budget: int) -> Iterator[slice]:
    """Consecutive slices whose padded size (rows x longest row) stays within the budget.

    Lengths must be sorted longest first, so the first row of a slice sets its padded length.
    A row longer than the budget still gets a batch of its own.
    """
    start = 0
    total = len(lengths_descending)
    while start < total:
        rows = max(1, token_budget // int(lengths_descending[start]))
        stop = min(total, start + rows)
        yield slice(start, stop)
        start = stop


def map_batches(
    compute: Callable[[Item], Result], items: Iterable[Item], device: torch.device
) -> Iterator[tuple[Item, Result]]:
    """(item, compute(item)) in the order of `items`, computed in inference mode.

    On a CPU with several threads, batches run side by side in single-threaded streams, one
    per thread, instead of one after another with every operation split across threads. Small
    operations then never wait on each other, which is faster, and far faster when other
    processes share the cores. A single item runs alone with every thread. The torch thread count
    is process-wide, so scoring assumes it is the only torch work of its process while it runs (one
    scoring run per worker process).
    """
    streams = stream_count(device)
    items = iter(items)
    ahead = list(itertools.islice(items, 2))
    if streams == 1 or len(ahead) < 2:
        # One stream, or one item only: it gets every thread.
        for item in itertools.chain(ahead, items):
            yield item, _in_inference_mode(compute, item)
        return
    items = itertools.chain(ahead, items)
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=streams) as pool:
            yield from _in_order(pool, compute, items, in_flight=2 * streams)
    finally:
        torch.set_num_threads(streams)


def _in_order(
    pool: ThreadPoolExecutor, compute: Callable[[Item], Result], items: Iterable[Item], in_flight: int
) -> Iterator[tuple[Item, Result]]:
    """Results in submission order, with a bounded number of items submitted ahead."""
    pending: deque[tuple[Item, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(_in_inference_mode, compute, item)))
        if len(pending) >= in_flight:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _in_inference_mode(compute: Callable[[Item], Result], item: Item) -> Result:
    with torch.inference_mode():  # grad mode is per thread
        return compute(item)


def offset_progress(progress: ProgressCallback | None, samples_before: int) -> ProgressCallback | None:
    """A callback for a later part of the samples that reports counts over all of them."""
    if progress is None:
        return None
    return lambda samples_done: progress(samples_before + samples_done)


class SampleProgress:
    """Counts samples whose every part (window, or embedded string) has been computed."""

    def __init__(self, parts_per_sample: np.ndarray, callback: ProgressCallback | None) -> None:
        self._parts_left = parts_per_sample.astype(np.int64)
        self._callback = callback
        self.samples_done = int(np.count_nonzero(self._parts_left == 0))

    def start(self) -> None:
        """Report the samples that need no computation at all."""
        self._report()

    def finish_parts(self, sample_indices: np.ndarray) -> None:
        touched, counts = np.unique(sample_indices, return_counts=True)
        self._parts_left[touched] -= counts
        self.samples_done += int(np.count_nonzero(self._parts_left[touched] == 0))
        self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(self.samples_done)
