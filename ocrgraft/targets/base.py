"""The target contract: what the vendor compiler accepts, which passes it needs, how to build."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from ocrgraft.core.compare import Tolerance
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.precision import read_keep_list
from ocrgraft.core.shapes import Case, ShapeSet


def _all_options():
    return [t.options for t in Target.__subclasses__()]


@dataclass
class SupportCheck:
    """The result of checking a graph against a target's op table."""

    table: str  # which table, e.g. "ONNX Runtime 1.31 CPU"
    unsupported: list[str] = field(default_factory=list)  # "OpType: why" -- blocks the build
    notes: list[str] = field(default_factory=list)  # documented restrictions of ops present

    @property
    def ok(self) -> bool:
        return not self.unsupported


@dataclass
class BuildResult:
    built: bool
    summary: str  # one line for the console and the report
    command: str | None = None  # the exact build command (also when not run)
    artifacts: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    # what the device will compute in, and what was verified here at which precision (report's head)
    precision: dict[str, str] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)  # what to run where the device is, exactly


@dataclass
class Artifact:
    """A built artifact that runs here, for the accuracy table: `run_many` takes a list of feeds at
    `shapes` (an artifact compiled for fixed shapes; None: any shape the model takes) and returns their
    outputs by the ONNX model's output names. `ran`: where its last run went, when that is worth
    saying (e.g. spread over Ray tasks)."""

    label: str
    run_many: Callable[[list[dict[str, np.ndarray]]], list[dict[str, np.ndarray]]]
    shapes: dict[str, tuple[int, ...]] | None = None
    ran: str = ""


@dataclass
class BuildContext:
    """What a target's build step gets: plain data, nothing of the pipeline that made it."""

    model_path: Path  # the verified final ONNX (out_dir/model.onnx)
    out_dir: Path  # where artifacts and scripts go
    name: str  # the model's name, for file names in scripts
    shapes: ShapeSet  # the verified shape range (min / opt / max per input)
    cases: list[Case]  # the test inputs and the source's outputs for them
    tolerance: Tolerance  # the one the stages were verified at
    settings: dict = field(default_factory=dict)  # the recipe's tables: [ascend], [sophon], [decoder], ...
    options: dict[str, str] = field(default_factory=dict)  # from the CLI, checked by Target.check_options
    images: list[Path] = field(default_factory=list)  # real images given with --images (paths)


# One spelling of a precision for every target (--quantize fp16 and F16 mean the same).
PRECISIONS = {"f32": "F32", "fp32": "F32", "f16": "F16", "fp16": "F16", "bf16": "BF16", "int8": "INT8"}


@dataclass(frozen=True)
class TargetOption:
    """A command-line option a target takes (--chip, --soc, ...), with the values it allows."""

    name: str  # the key in BuildContext.options, and the flag: --<name>
    help: str
    choices: tuple[str, ...] = ()  # allowed values; () takes any that `pattern` (if set) matches
    pattern: str = ""  # a regular expression the value must match
    flag: str = ""  # the flag when it is not --<name> (e.g. --target-version)
    refused: tuple[tuple[str, str], ...] = ()  # (value, why the target cannot honour it)

    @property
    def cli(self) -> str:
        return self.flag or f"--{self.name}"


class Target:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    passes: ClassVar[tuple[str, ...]] = ()  # run after the generic passes, before the recipe's extras
    options: ClassVar[tuple[TargetOption, ...]] = ()
    # options a target does not take, with the reason (--quantize on the float reference)
    not_taken: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_options(cls, given: dict[str, object]) -> dict[str, str]:
        """The options given for this target, checked before any work: an option the target does not
        take, or a value it does not allow, is refused by name. Precisions get one spelling."""
        known = {o.name: o for o in cls.options}
        out = {}
        for key, value in given.items():
            if value in (None, False, ""):
                continue
            option = known.get(key)
            if option is None:
                flag = next((o.cli for t in _all_options() for o in t if o.name == key), f"--{key}")
                takes = ", ".join(o.cli for o in cls.options) or "none"
                why = f": {cls.not_taken[key]}" if key in cls.not_taken else ""
                raise OcrgraftError(f"{flag} does not apply to target {cls.name}{why} (its options: {takes})")
            text = str(value)
            if key == "quantize":
                text = PRECISIONS.get(text.lower(), text)
            refused = dict(option.refused)
            if text in refused:
                raise OcrgraftError(f"{option.cli} {text}: target {cls.name} cannot: {refused[text]}")
            if option.choices and text not in option.choices:
                raise OcrgraftError(
                    f"{option.cli} {value}: target {cls.name} takes {', '.join(option.choices)}"
                )
            if option.pattern and not re.fullmatch(option.pattern, text):
                raise OcrgraftError(
                    f"{option.cli} {value}: not a valid value for target {cls.name} ({option.help})"
                )
            if key == "keep":
                read_keep_list(text)  # a damaged keep-list is said here, not after the build has started
            if key == "calib" and not Path(text).exists():
                raise OcrgraftError(f"{option.cli} {text}: no such file or folder")
            out[key] = text
        return out

    def __init__(self, version: str | None = None):
        self.version = version  # the toolchain version whose op table applies (targets define defaults)

    def max_opset(self) -> int | None:
        """The newest default-domain opset the toolchain reads; convert lowers newer models to it."""
        return None

    def check_support(self, model: ir.Model) -> SupportCheck:
        raise NotImplementedError

    def build(self, ctx: BuildContext) -> BuildResult:
        raise NotImplementedError

    def next_steps(self, ctx: BuildContext, build: BuildResult) -> list[str]:
        """The commands to run on the device (or its toolchain's machine), with what they need; markdown."""
        return []

    def artifacts(self, out_dir: Path) -> list[Artifact]:
        """The artifacts a finished build in `out_dir` left that run on this machine (a BModel on the
        chip simulator); none by default: ONNX Runtime runs the ONNX files already."""
        return []
