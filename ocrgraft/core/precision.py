"""The keep-list: ONNX nodes to compute in float where a target lowers precision, one file format for
every target (precision.json, written by the Sophon INT8 precision search or by hand):

    {"keep": [{"node": "<ONNX node name, or its first output's name when unnamed>", "precision": "F32"}, ...]}

Sophon turns it into a TPU-MLIR quantize table, trt into per-layer precisions (build_engine.py and
trtexec --layerPrecisions), ascend into ATC's --keep_dtype file, to-fp16 into nodes it leaves in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError

PRECISION_FILE = "precision.json"


def read_keep_list(path: str | Path) -> list[str]:
    """The node names a precision.json keeps in float."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        nodes = [str(k["node"]) for k in data["keep"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OcrgraftError(f"keep-list {path}: not a precision.json ({type(exc).__name__}: {exc})") from None
    return nodes


def node_key(node) -> str:
    """A node's name in a keep-list: its name, or its first output's name when it has none."""
    name = getattr(node, "name", "")
    if name:
        return name
    outputs = node.outputs if hasattr(node, "outputs") else node.output
    first = outputs[0]
    return first if isinstance(first, str) else first.name


def check_keep_list(path: str | Path, node_keys: set[str]) -> list[str]:
    """The keep-list's nodes, refused by name when the model has no such node."""
    nodes = read_keep_list(path)
    missing = [n for n in nodes if n not in node_keys]
    if missing:
        raise OcrgraftError(
            f"keep-list {path}: the final model has no node(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    return nodes
