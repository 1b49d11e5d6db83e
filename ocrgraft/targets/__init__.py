"""Targets by name. `ort` runs here; the vendor targets say plainly what they did not build."""

from __future__ import annotations

import difflib

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.targets.ascend import AscendTarget
from ocrgraft.targets.base import Artifact, BuildContext, BuildResult, SupportCheck, Target
from ocrgraft.targets.ort import OrtTarget
from ocrgraft.targets.sophon import SophonTarget
from ocrgraft.targets.tensorrt import TensorRTTarget

TARGETS: dict[str, type[Target]] = {
    t.name: t for t in (OrtTarget, TensorRTTarget, AscendTarget, SophonTarget)
}


def target_class(name: str) -> type[Target]:
    if name not in TARGETS:
        near = difflib.get_close_matches(name, TARGETS, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise OcrgraftError(f"unknown target '{name}' ({hint}known: {', '.join(TARGETS)})")
    return TARGETS[name]


def get_target(name: str, version: str | None = None) -> Target:
    return target_class(name)(version)


__all__ = [
    "Artifact",
    "BuildContext",
    "BuildResult",
    "SupportCheck",
    "TARGETS",
    "Target",
    "get_target",
    "target_class",
]
