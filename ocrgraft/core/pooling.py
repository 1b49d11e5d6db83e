"""Adaptive average pooling as per-axis averaging matrices, and the cheapest op for each axis.

torch's AdaptiveAvgPool puts output cell i of an axis over input [floor(i*n/o), ceil((i+1)*n/o)); when o
does not divide n the windows overlap or differ in size, which no plain pool expresses in general. Both
the torch frontend (before export) and the pass reading torch's exported form (after it) use these.
"""

from __future__ import annotations

import numpy as np


def adaptive_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The [out, in] matrix whose row i averages torch's adaptive window i."""
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def axis_plan(matrix: np.ndarray) -> tuple | None:
    """How one axis' averaging matrix [out, in] is best computed: ("id",), ("full",), ("pool", k, s), or
    ("matmul",) for windows of uneven size or spacing."""
    out_size, in_size = matrix.shape
    if out_size == in_size and np.allclose(matrix, np.eye(in_size), rtol=0, atol=1e-7):
        return ("id",)
    windows = []
    for row in matrix:
        nz = np.flatnonzero(np.abs(row) > 1e-9)
        if (
            nz.size == 0
            or nz[-1] - nz[0] + 1 != nz.size
            or not np.allclose(row[nz], 1.0 / nz.size, rtol=1e-6, atol=0)
        ):
            return ("matmul",)
        windows.append((int(nz[0]), int(nz.size)))
    if out_size == 1 and windows[0] == (0, in_size):
        return ("full",)
    k = windows[0][1]
    s = windows[1][0] - windows[0][0] if out_size > 1 else 1
    if (
        s >= 1
        and all(size == k and start == i * s for i, (start, size) in enumerate(windows))
        and (in_size - k) // s + 1 == out_size
    ):
        return ("pool", k, s)
    return ("matmul",)
