"""Frontends turn a source model into ONNX plus a way to get the source's own outputs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError

# What a frontend needs installed, and the command that installs it (ocrgraft itself installs neither).
NEEDS = {
    "torch": (("torch",), "PyTorch", "pip install 'ocrgraft[torch]'  (the CPU wheel, torch==2.13.0)"),
    "paddle": (
        ("paddle", "paddle2onnx"),
        "PaddlePaddle and paddle2onnx",
        "pip install 'ocrgraft[paddle]' && pip install --no-deps paddle2onnx==2.1.0  (--no-deps: "
        "paddle2onnx pins an old onnx)",
    ),
}


def require(frontend: str, what: str) -> None:
    """A one-line error naming the install command when `what` (a model) needs a framework not here."""
    modules, name, command = NEEDS[frontend]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise OcrgraftError(f"{what} needs {name}, which is not installed ({', '.join(missing)}): {command}")


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
