"""BLEU-1..4 (Papineni, Roukos, Ward & Zhu 2002, "BLEU: a method for automatic evaluation of machine
translation"), corpus level, as used for captioning results (Vinyals et al. 2015, Table 1).

For each order n, the modified precision p_n is the sum over candidates of n-gram counts clipped by
the most times the n-gram appears in any one reference (sec. 2.1), divided by the sum of candidate
n-gram counts (sec. 2.1.1, corpus level: sums first, then divide). The brevity penalty (sec. 2.2.2)
is ``BP = 1`` if ``c > r`` else ``exp(1 - r / c)``, where ``c`` is the total candidate length and
``r`` the sum over candidates of the reference length closest to the candidate's (the shorter on a
tie). ``BLEU-N = BP * exp(sum_{n<=N} log(p_n) / N)`` (uniform weights); it is 0 when some
``p_n`` is 0 (no smoothing, as the paper).
"""

from __future__ import annotations

import collections
import math
from typing import Sequence

__all__ = ["ngram_counts", "bleu_scores"]


def ngram_counts(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_scores(candidates: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
                max_order: int = 4) -> dict[str, float]:
    """Corpus BLEU-1 .. BLEU-``max_order`` of tokenised ``candidates`` against their ``references``.

    ``candidates[i]`` is a list of words; ``references[i]`` a list of one or more word lists.
    Returns ``{"bleu1": .., ..., "bleu4": .., "precisions": [p_1, ..], "brevity_penalty": BP}``.
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every candidate needs at least one reference")
    matches = [0] * max_order
    totals = [0] * max_order
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        cand = list(cand)
        cand_len += len(cand)
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        for n in range(1, max_order + 1):
            counts = ngram_counts(cand, n)
            most = collections.Counter()
            for r in refs:
                for gram, k in ngram_counts(list(r), n).items():
                    most[gram] = max(most[gram], k)
            matches[n - 1] += sum(min(k, most[gram]) for gram, k in counts.items())
            totals[n - 1] += sum(counts.values())
    precisions = [m / t if t else 0.0 for m, t in zip(matches, totals)]
    if cand_len == 0:
        bp = 0.0
    else:
        bp = 1.0 if cand_len > ref_len else math.exp(1.0 - ref_len / cand_len)
    out: dict[str, float] = {"precisions": precisions, "brevity_penalty": bp}
    for order in range(1, max_order + 1):
        ps = precisions[:order]
        out[f"bleu{order}"] = 0.0 if min(ps) == 0 else bp * math.exp(sum(math.log(p) for p in ps) / order)
    return out
