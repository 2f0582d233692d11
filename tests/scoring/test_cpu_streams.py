"""CPU streams: several batches run side by side, one single-threaded stream per thread, in order; a
single batch runs alone with every thread. The greedy choice of a token is argmax's."""

import threading

import pytest
import torch

from evals.scoring.batching import map_batches

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def seen(item: int) -> tuple[int, int, bool, str]:
    return item, torch.get_num_threads(), torch.is_inference_mode_enabled(), threading.current_thread().name


def test_several_batches_run_in_single_threaded_streams_and_come_back_in_order(two_threads):
    # The first two batches wait for each other: they can only both pass if they run side by side.
    together = threading.Barrier(2, timeout=30)

    def side_by_side(item: int) -> tuple[int, int, bool, str]:
        if item < 2:
            together.wait()
        return seen(item)

    results = list(map_batches(side_by_side, range(7), CPU))
    assert [item for item, _ in results] == list(range(7))
    assert [value[0] for _, value in results] == list(range(7))
    assert {value[1] for _, value in results} == {1}, "each stream runs on one thread"
    assert all(value[2] for _, value in results)
    assert len({value[3] for _, value in results}) == 2, "two streams"
    assert torch.get_num_threads() == 2, "the thread count is given back"


def test_a_single_batch_runs_alone_with_every_thread(two_threads):
    [(item, value)] = list(map_batches(seen, iter([5]), CPU))
    assert item == 5 and value[:3] == (5, 2, True)
    assert value[3] == threading.current_thread().name


def test_no_batch_runs_nothing(two_threads):
    assert list(map_batches(seen, [], CPU)) == []


def test_greedy_choice_is_argmax_s_first_of_equals():
    from evals.scoring.generation.steps import greedy

    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randint(0, 3, (16, 5, 40), generator=generator).float()  # many ties
        assert torch.equal(greedy(logits), logits.argmax(dim=-1))
    with_nan = torch.tensor([[0.0, float("nan"), 1.0, float("nan")]])
    assert greedy(with_nan).tolist() == with_nan.argmax(dim=-1).tolist() == [1]
