"""Frontends turn a source model into ONNX plus a way to get the source's own outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir


@dataclass
class Source:
    """The ONNX graph to start from and the reference it is checked against."""

    name: str
    framework: str  # "onnx", "torch", "paddle"
    model: ir.Model
    # The source framework's outputs for given inputs; None means ONNX Runtime on the unmodified model.
    reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    location: str = ""
    notes: list[str] = field(default_factory=list)
    workdir: Any = None  # temporary files the reference needs, kept alive with the source
