"""Which rows of a split a suite measures when it measures fewer than all (its `n_examples`).

A split's first n rows were the suites' choice. On a split stored class by class (a common layout:
a folder per class, read in order) they hold one or two classes, and a robust accuracy measured on
them says nothing of the others. The rows here are class-stratified instead:
- each class present gets a share of n in proportion to its count in the split (largest
  remainder), and at least one row while n allows one for every class;
- within a class the rows are taken in the split's order, so the choice is fixed (no random
  numbers: every suite, process and run measures the same rows);
- the positions come back in the split's order. On a shuffled split they are close to its first n
  rows, and a split of n rows or fewer is measured whole.

Torch-free, so that it is type-checked with the other torch-free modules.
"""

from __future__ import annotations

import numpy as np


def stratified_rows(labels, n: int) -> np.ndarray:
    """Positions (int64, ascending) of the `n` rows of a split with these labels that a suite
    measures: every row when the split has at most `n`."""
    labels = np.asarray(labels).reshape(-1)
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = class_quotas(counts, n)
    chosen = [np.flatnonzero(labels == c)[:k] for c, k in zip(classes, quotas)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def class_quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Rows per class, summing to n (n below the total): proportional to `counts` by largest
    remainder, then a row for each class left without one, taken from the class holding most.
    No quota exceeds its class's count: a share of n below the total is below the class's count,
    and rounding it up reaches the count at most."""
    counts = np.asarray(counts, dtype=np.int64)
    exact = counts * n / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    short = n - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")  # the largest remainders first
    quotas[order[:short]] += 1
    if n >= len(counts):
        # a class with no row: with n at least the number of classes, some other class holds two
        # or more (pigeonhole), and gives one
        for empty in np.flatnonzero(quotas == 0):
            quotas[int(np.argmax(quotas))] -= 1
            quotas[empty] += 1
    return quotas
