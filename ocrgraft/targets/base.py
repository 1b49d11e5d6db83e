"""The target contract: what the vendor compiler accepts, which passes it needs, how to build."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import onnx_ir as ir

from ocrgraft.converter.pipeline import PipelineResult
from ocrgraft.converter.recipes import Recipe


@dataclass
class SupportCheck:
    """The result of checking a graph against a target's op table."""

    table: str                                   # which table, e.g. "ONNX Runtime 1.31 CPU"
    unsupported: list[str] = field(default_factory=list)   # "OpType: why" -- blocks the build
    notes: list[str] = field(default_factory=list)         # documented restrictions of ops present

    @property
    def ok(self) -> bool:
        return not self.unsupported


@dataclass
class BuildResult:
    built: bool
    summary: str                                  # one line for the console and the report
    command: str | None = None                    # the exact build command (also when not run)
    artifacts: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


@dataclass
class BuildContext:
    """Everything a target's build step may use."""

    model_path: Path          # the verified final ONNX (out_dir/model.onnx)
    out_dir: Path             # where artifacts and scripts go
    result: PipelineResult    # shapes, test inputs and the source's outputs for them
    recipe: Recipe
    options: dict[str, str] = field(default_factory=dict)   # from the CLI: build, soc, chip, quantize, calib


class Target:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    passes: ClassVar[tuple[str, ...]] = ()    # run after the generic passes, before the recipe's extras

    def __init__(self, version: str | None = None):
        self.version = version   # the toolchain version whose op table applies (targets define defaults)

    def max_opset(self) -> int | None:
        """The newest default-domain opset the toolchain reads; convert lowers newer models to it."""
        return None

    def check_support(self, model: ir.Model) -> SupportCheck:
        raise NotImplementedError

    def build(self, ctx: BuildContext) -> BuildResult:
        raise NotImplementedError
