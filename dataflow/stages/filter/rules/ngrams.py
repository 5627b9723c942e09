"""Word n-grams as integers, for the Gopher repetition rules: computed once per document (text.Doc.gram_groups)
and shared by top_ngram (n = 2..4) and dup_ngram (n = 5..10).

Ids are exact, not hashes: words get ids in order of first appearance, and two n-grams share an id exactly when
their words are equal, so no collision can change a decision. Both rules count with numpy over arrays of ints
instead of hashing tuples of strings in a Python loop.

Only repeated n-grams matter to either rule, and an n-gram can repeat only where its first n-1 words and its
last n-1 words both repeat. So each n keeps the repeated n-grams alone (`repeated_groups`, -1 elsewhere) and
builds n + 1 from those: for prose the candidates shrink fast with n, and each step sorts only them.
"""
from __future__ import annotations

import numpy as np


def repeated_groups(prev: np.ndarray | None, words: np.ndarray, n: int) -> np.ndarray:
    """One entry per n-gram position (len(words) - n + 1 of them): equal ints >= 0 exactly where the n-grams are
    equal and occur twice or more, -1 where the n-gram occurs once. `words`: the word ids; `prev`: this function's
    result for n - 1 (None for n = 1)."""
    m = len(words) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.where(np.bincount(words)[words] >= 2, words, -1)
    cand = np.flatnonzero((prev[:m] >= 0) & (prev[1:m + 1] >= 0))
    out = np.full(m, -1, dtype=np.int64)
    if cand.size:
        # (group of the first n-1 words, last word): distinct pairs, distinct ints (both are below len(words) + 1)
        key = prev[cand] * (len(words) + 1) + words[cand + n - 1]
        _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        out[cand] = np.where(counts[inv] >= 2, inv, -1)
    return out


def gram_ids(groups: np.ndarray) -> np.ndarray:
    """Exact ids for every n-gram from `repeated_groups`: a repeated one keeps its group, each single one gets an
    id of its own above them. All below 2 * len(groups) (bincount-sized)."""
    ids = groups.copy()
    single = ids < 0
    ids[single] = len(groups) + np.arange(int(single.sum()))
    return ids


def most_common(ids: np.ndarray) -> tuple[int, int]:
    """(position of the first occurrence, count) of the most frequent id; of equally frequent ones the one seen
    first (Counter.most_common(1) over the n-grams in text order). `ids`: non-negative, bincount-sized."""
    counts = np.bincount(ids)[ids]
    top = int(counts.max())
    first = int(np.argmax(counts == top))    # an earlier occurrence of its id would have the same count
    return first, top


def repeated_chars(ids: np.ndarray, gram_chars: np.ndarray, n: int) -> int:
    """datatrove's find_all_duplicate over n-grams: walk the positions, an n-gram already seen at a visited
    position is a repeat (its characters `gram_chars[i]` counted) and the walk skips its n words, so overlapping
    repeats are not counted twice. Only positions of ids that occur twice or more can be repeats or make one,
    so only they are walked. `ids`: non-negative, bincount-sized."""
    if len(ids) < 2:
        return 0
    cand = np.flatnonzero(np.bincount(ids)[ids] >= 2)
    if not cand.size:
        return 0
    seen, repeated, nxt = set(), 0, 0
    for k, g, c in zip(cand.tolist(), ids[cand].tolist(), gram_chars[cand].tolist()):
        if k < nxt:
            continue            # inside a counted repeat: never visited
        if g in seen:
            repeated += c
            nxt = k + n
        else:
            seen.add(g)
    return repeated
