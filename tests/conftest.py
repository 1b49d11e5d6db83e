"""Shared fixtures: small crafted models with the patterns exporters leave, and the real PP-OCR models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# Every semantics-preserving pass that takes no arguments, beyond the generic ones: run together on real
# models (tests/test_passes_ppocr.py, tests/test_zoo.py) they must keep outputs equal and dims dynamic.
EXACT_FAMILY = [
    "pool-to-reduce",
    "maxpool3d-to-2d",
    "split-pool",
    "fold-reshape-shapes",
    "reshape-gemm-to-matmul",
    "drop-zero-rnn-state",
    "fold-flip-rnn",
    "int64-to-int32",
    "legalize-gridsample",
    "decompose-gridsample",
    "squeeze-after-concat",
]


def ppocr_model(name: str) -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    assert spec is not None, "rapidocr-onnxruntime is not installed: run the tests through `make test`"
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    assert path.exists(), path
    return path


@pytest.fixture(scope="session")
def ppocr_rec() -> Path:
    return ppocr_model("ch_PP-OCRv4_rec_infer.onnx")


def make_dynamic_model(stale_width: int | None = None) -> onnx.ModelProto:
    """x[N,3,8,W] -> Conv -> Identity -> Relu -> (Shape->Gather->Unsqueeze->Concat) Reshape -> y[N, 32, W],
    with a Constant-only branch folded into a Mul and a dead node. `stale_width` writes a wrong, static
    shape annotation for an intermediate, as torch.export does for dynamic LSTMs."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["c"], ["c_id"]),
        helper.make_node("Relu", ["c_id"], ["r"]),
        helper.make_node("Constant", [], ["k1"], value=numpy_helper.from_array(np.array(1.5, np.float32))),
        helper.make_node("Constant", [], ["k2"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Add", ["k1", "k2"], ["k"]),
        helper.make_node("Mul", ["r", "k"], ["rk"]),
        helper.make_node("Shape", ["rk"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Constant", [], ["i3"], value=numpy_helper.from_array(np.array(3, np.int64))),
        helper.make_node("Gather", ["s", "i3"], ["wd"], axis=0),
        helper.make_node("Unsqueeze", ["wd", "ax0"], ["w1"]),
        helper.make_node("Concat", ["n1", "minus1", "w1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["rk", "newshape"], ["y"]),
        helper.make_node("Neg", ["r"], ["dead"]),
    ]
    inits = [
        w,
        b,
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    graph = helper.make_graph(
        nodes,
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32, "width"])],
        inits,
    )
    if stale_width:
        graph.value_info.append(
            helper.make_tensor_value_info("rk", TensorProto.FLOAT, ["batch", 4, 8, stale_width])
        )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


DYN_SHAPES = "x:1x3x8x16,2x3x8x40,3x3x8x64"


@pytest.fixture
def dynamic_model_file(tmp_path) -> Path:
    path = tmp_path / "dyn.onnx"
    onnx.save(make_dynamic_model(), path)
    return path


def run_cli(capsys, *argv):
    """Run the command in-process: its exit code, stdout and stderr."""
    from ocrgraft.converter.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def cli_error(capsys, *argv):
    """Run the command in-process; it must fail with exactly one line on stderr and nothing on stdout."""
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 1 and out == ""
    assert err.startswith("ocrgraft: error: ") and err.count("\n") == 1, err
    return err
