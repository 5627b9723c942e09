"""Word n-grams as integers, for the Gopher repetition rules: computed once per document (text.Doc.gram_ids)
and shared by top_ngram (n = 2..4) and dup_ngram (n = 5..10).

An n-gram's id is exact, not a hash: words get ids in order of first appearance, and the n-gram ids are the
ranks of the pairs (id of the (n-1)-gram, id of the last word), so two n-grams share an id exactly when their
words are equal. Both rules then count with numpy over arrays of ints instead of hashing tuples of strings in a
Python loop (the profile's top item: 19% of RF's CPU).
"""
from __future__ import annotations

import numpy as np


def word_ids(words: list[str]) -> np.ndarray:
    """One int per word; equal words, equal ids."""
    ids: dict[str, int] = {}
    return np.fromiter((ids.setdefault(w, len(ids)) for w in words), dtype=np.int64, count=len(words))


def next_gram_ids(prev: np.ndarray, words: np.ndarray, n: int) -> np.ndarray:
    """The n-gram ids from the (n-1)-gram ids `prev` and the word ids `words` (len(words) - n + 1 of them)."""
    m = len(words) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    pairs = prev[:m] * (int(words.max()) + 1) + words[n - 1:]
    return np.unique(pairs, return_inverse=True)[1].astype(np.int64, copy=False).reshape(-1)


def most_common(ids: np.ndarray) -> tuple[int, int]:
    """(position of the first occurrence, count) of the most frequent id; of equally frequent ones the one seen
    first (Counter.most_common(1) over the n-grams in text order)."""
    _, first, inv, counts = np.unique(ids, return_index=True, return_inverse=True, return_counts=True)
    top = np.flatnonzero(counts == counts.max())
    g = top[np.argmin(first[top])]
    return int(first[g]), int(counts[g])


def repeated_chars(ids: np.ndarray, gram_chars: np.ndarray, n: int) -> int:
    """datatrove's find_all_duplicate over n-grams: walk the positions, an n-gram already seen at a visited
    position is a repeat (its characters `gram_chars[i]` counted) and the walk skips its n words, so overlapping
    repeats are not counted twice. Only positions of ids that occur twice or more can be repeats or make one,
    so only they are walked."""
    if len(ids) < 2:
        return 0
    _, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    cand = np.flatnonzero(counts[inv] >= 2)
    if not cand.size:
        return 0
    seen, repeated, nxt = set(), 0, 0
    chars = gram_chars[cand].tolist()
    for k, g, c in zip(cand.tolist(), inv[cand].tolist(), chars):
        if k < nxt:
            continue            # inside a counted repeat: never visited
        if g in seen:
            repeated += c
            nxt = k + n
        else:
            seen.add(g)
    return repeated
