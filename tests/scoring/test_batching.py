import numpy as np
import torch

from evals.scoring.batching import budget_batches
from evals.scoring.causal import score_causal


def test_it_gives_the_same_numbers_whatever_the_token_budget(tiny_lm, texts):
    one_window_per_pass = score_causal(tiny_lm, texts, token_budget=1)
    large_batches = score_causal(tiny_lm, texts, token_budget=4096)
    np.testing.assert_allclose(large_batches.nll, one_window_per_pass.nll, rtol=1e-5)
    windows = np.ceil(one_window_per_pass.tokens / tiny_lm.max_length).astype(int)
    assert one_window_per_pass.forward_passes == windows.sum()
    assert large_batches.forward_passes < windows.sum() / 4


def test_it_keeps_every_batch_within_the_budget():
    lengths = np.sort(np.random.default_rng(0).integers(1, 300, size=500))[::-1]
    batches = list(budget_batches(lengths, token_budget=1000))
    assert np.concatenate([np.arange(len(lengths))[batch] for batch in batches]).tolist() == list(range(len(lengths)))
    for batch in batches:
        assert (batch.stop - batch.start) * lengths[batch.start] <= 1000


def test_it_reports_progress_until_every_sample_is_done(tiny_lm, texts):
    reports: list[int] = []
    score_causal(tiny_lm, texts, token_budget=256, progress=reports.append)
    assert reports == sorted(reports)
    assert reports[-1] == len(texts)
    assert len(reports) > 2


def test_it_scores_a_dataset_in_bounded_groups_with_the_same_numbers(tiny_lm, texts, monkeypatch):
    whole = score_causal(tiny_lm, texts)
    monkeypatch.setattr("evals.scoring.causal._GROUP_CHARS", 500)
    reports: list[int] = []
    grouped = score_causal(tiny_lm, texts, progress=reports.append)
    np.testing.assert_allclose(grouped.nll, whole.nll, rtol=1e-5)
    assert grouped.tokens.tolist() == whole.tokens.tolist()
    assert reports == sorted(reports)
    assert reports[-1] == len(texts)


def test_it_gives_the_same_numbers_in_one_cpu_stream_or_several(tiny_lm, texts):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_stream = score_causal(tiny_lm, texts)
        torch.set_num_threads(3)
        three_streams = score_causal(tiny_lm, texts)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(three_streams.nll, one_stream.nll, rtol=1e-6)
    assert three_streams.forward_passes == one_stream.forward_passes
