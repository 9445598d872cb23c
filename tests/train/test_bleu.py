"""BLEU-1..4 on cases worked out by hand (Papineni et al. 2002)."""

import math

import pytest

from jaxdl.train.bleu import bleu_scores


def test_identical_sentence_scores_one():
    s = "the cat sat on the mat".split()
    out = bleu_scores([s], [[s]])
    assert out["bleu1"] == out["bleu4"] == 1.0 and out["brevity_penalty"] == 1.0


def test_clipped_unigram_precision_of_the_paper_example():
    """Papineni et al. sec. 2.1: "the the the the the the the" against two references: p1 = 2/7."""
    cand = "the the the the the the the".split()
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    out = bleu_scores([cand], [refs])
    assert out["precisions"][0] == pytest.approx(2 / 7)
    assert out["precisions"][1] == 0.0 and out["bleu2"] == 0.0  # no matching bigram ("the the")
    # c = 7; reference lengths 6 and 7, the closest is 7, so c == r and BP = exp(1 - 7/7) = 1
    assert out["brevity_penalty"] == 1.0
    assert out["bleu1"] == pytest.approx(2 / 7)


def test_hand_worked_bleu_with_brevity_penalty():
    """cand "a red circle" (3 words) vs ref "a large red circle" (4 words):
    p1 = 3/3, p2 = 1/2 ("red circle"; "a red" is not a reference bigram), p3 = 0/1.
    BP = exp(1 - 4/3). BLEU-2 = BP * sqrt(1 * 1/2); BLEU-3 = 0."""
    out = bleu_scores([["a", "red", "circle"]], [[["a", "large", "red", "circle"]]])
    bp = math.exp(1 - 4 / 3)
    assert out["precisions"][:3] == [1.0, 0.5, 0.0]
    assert out["brevity_penalty"] == pytest.approx(bp)
    assert out["bleu1"] == pytest.approx(bp)
    assert out["bleu2"] == pytest.approx(bp * math.sqrt(0.5))
    assert out["bleu3"] == 0.0


def test_corpus_level_sums_before_dividing_and_closest_reference_length():
    """Two candidates: counts are summed over the corpus, not averaged per sentence.
    1) "a b c d" vs ref "a b c d"  -> matches n=1..4: 4, 3, 2, 1 of 4, 3, 2, 1
    2) "a x" vs refs "a y", "a y z w" -> matches 1 of 2 unigrams, 0 of 1 bigram; closest ref length 2
    p1 = 5/6, p2 = 3/4, p3 = 2/2, p4 = 1/1; c = 6 = r -> BP = 1."""
    out = bleu_scores([list("abcd"), ["a", "x"]], [[list("abcd")], [["a", "y"], ["a", "y", "z", "w"]]])
    assert out["precisions"] == pytest.approx([5 / 6, 3 / 4, 1.0, 1.0])
    assert out["brevity_penalty"] == 1.0
    assert out["bleu4"] == pytest.approx((5 / 6 * 3 / 4) ** 0.25)
    assert out["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="reference sets"):
        bleu_scores([["a"]], [])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu_scores([["a"]], [[]])
