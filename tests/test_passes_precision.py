"""int64-to-int32 (schema-aware narrowing, exact Slice clamping, refusal of lossy casts) and to-fp16
(keep-list, overflowing constants, activation ranges measured on sample inputs)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx import TensorProto, helper

from ocrgraft.core.compare import FP32
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner
from ocrgraft.passes.to_fp16 import F16_ACTIVATION_LIMIT, ToFp16

from test_passes_common import (
    apply,
    assert_idempotent,
    assert_untouched,
    canonical,
    export_torch,
    graph_model,
    rand,
    verify,
)

BIG = np.iinfo(np.int64).max


def _dtype(model, name):
    return next(v for n in model.graph for v in n.inputs if v is not None and v.name.startswith(name)).dtype


def test_int64_constants_narrow_where_the_schema_allows():
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
        helper.make_node("Gather", ["s", "idx"], ["g"], axis=1),
        helper.make_node("Reshape", ["g", "shape"], ["y"]),
    ]
    inits = [
        ("st", np.array([1])),
        ("en", np.array([BIG])),
        ("ax", np.array([2])),
        ("sp", np.array([1])),
        ("idx", np.array([0, 3, 5])),
        ("shape", np.array([0, -1])),
    ]
    model = graph_model(nodes, [("x", ["n", 10, "w"])], [("y", ["n", None])], inits)
    verify(model, ["int64-to-int32"], "x:1x10x4,2x10x9,3x10x33")
    slice_node, gather, reshape = list(model.graph)
    assert {v.dtype for v in slice_node.inputs[1:]} == {ir.DataType.INT32}
    assert int(slice_node.inputs[2].const_value.numpy()[0]) == np.iinfo(np.int32).max  # 'to the end', exactly
    assert gather.inputs[1].dtype == ir.DataType.INT32
    assert reshape.inputs[1].dtype == ir.DataType.INT64  # Reshape takes INT64 only
    assert len(model.graph.initializers) == 6  # old copies are gone
    assert_idempotent("int64-to-int32", model)


def test_computed_slice_bounds_keep_int64_but_clamp_sentinels():
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Slice", ["sh", "one", "en"], ["tail"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"]),
        helper.make_node("Slice", ["x", "n0", "en"], ["y"]),
    ]  # starts computed at run time
    inits = [("one", np.array([1])), ("en", np.array([BIG])), ("zero", np.array(0))]
    model = graph_model(
        nodes + [helper.make_node("Unsqueeze", ["n"], ["n0"], axes=[0])],
        [("x", ["n", 3])],
        [("y", ["m", 3]), ("tail", [1], TensorProto.INT64)],
        inits,
    )
    model.graph.sort()
    verify(model, ["int64-to-int32"], "x:1x3,4x3")
    last = next(n for n in model.graph if n.op_type == "Slice" and n.inputs[0].name == "x")
    assert (
        last.inputs[2].dtype == ir.DataType.INT64
        and int(last.inputs[2].const_value.numpy()[0]) == np.iinfo(np.int32).max
    )
    assert_idempotent("int64-to-int32", model)


def test_lossy_int64_constant_is_refused_by_name():
    nodes = [helper.make_node("Add", ["x", "offset"], ["y"])]
    model = graph_model(
        nodes,
        [("x", [2], TensorProto.INT64)],
        [("y", [2], TensorProto.INT64)],
        [("offset", np.array([2**40, 1]))],
    )
    before = canonical(model)
    with pytest.raises(OcrgraftError, match="offset.*1099511627776"):
        apply("int64-to-int32", model)
    assert canonical(model) == before  # refused before anything changed
    assert_untouched(
        "int64-to-int32", graph_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2])], [("y", [2])])
    )


class _Small(torch.nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d((8, 2)),
        )
        self.rnn = torch.nn.LSTM(32, 16, bidirectional=True, batch_first=True)
        self.fc = torch.nn.Linear(32, 11)

    def forward(self, x):
        f = self.cnn(x)  # [b, 8, 4, w/2]
        f = f.flatten(1, 2).permute(0, 2, 1)  # [b, w/2, 32]
        f = torch.nn.functional.interpolate(f.unsqueeze(1), scale_factor=(1.0, 1.0)).squeeze(1)
        r, _ = self.rnn(f * self.scale)
        return torch.log_softmax(self.fc(r), -1)


def _fp32_model(scale=1.0):
    return export_torch(
        _Small(scale),
        (torch.randn(2, 3, 32, 40),),
        opset=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 3: "w"}},
    )


def test_fp16_matches_fp32_within_its_tolerance_and_keeps_io_float32():
    model = _fp32_model()
    result = verify(model, ["to-fp16"], "x:1x3x32x16,2x3x32x40,3x3x32x96", tol=FP32)
    assert 0 < result.stages[1].max_abs < 1e-2  # checked with the pass's 1e-2 tolerance
    weights = [
        v for v in model.graph.initializers.values() if v.dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16)
    ]
    assert sum(v.dtype == ir.DataType.FLOAT16 for v in weights) >= 0.8 * len(weights)
    assert (
        model.graph.inputs[0].dtype == ir.DataType.FLOAT and model.graph.outputs[0].dtype == ir.DataType.FLOAT
    )
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_idempotent("to-fp16", model)


def test_fp16_keep_list_and_overflowing_constants_stay_float32():
    model = _fp32_model(scale=1e5)  # a constant beyond float16's range
    apply("to-fp16(keep=LogSoftmax)", model)
    kept = [n for n in model.graph if n.op_type in ("LogSoftmax", "Mul")]
    assert kept and all(n.inputs[0].dtype == ir.DataType.FLOAT for n in kept)
    resize = next(n for n in model.graph if n.op_type == "Resize")
    assert (
        resize.inputs[0].dtype == ir.DataType.FLOAT16 and resize.inputs[2].dtype == ir.DataType.FLOAT
    )  # scales
    Runner(model).run(
        {"x": rand(2, 3, 32, 24)}
    )  # activations may overflow (x * 1e5): that needs a recipe keep-list
    assert_idempotent("to-fp16(keep=LogSoftmax)", model)
    assert_untouched(
        "to-fp16",
        graph_model(
            [helper.make_node("Add", ["x", "x"], ["y"])],
            [("x", [2], TensorProto.INT64)],
            [("y", [2], TensorProto.INT64)],
        ),
    )


def test_fp16_reads_a_precision_json_keep_list(tmp_path):
    """The keep-list format every target reads: the named nodes (by name, or by first output when
    unnamed) stay float32, the others go float16."""
    import json

    model = _large_activation_model()
    keep = tmp_path / "precision.json"
    keep.write_text(json.dumps({"keep": [{"node": "big", "precision": "F32"}]}))  # the unnamed MatMul
    apply(f"to-fp16(keep={keep})", model)
    assert _node(model, "MatMul").inputs[0].dtype == ir.DataType.FLOAT
    assert _node(model, "Relu").inputs[0].dtype == ir.DataType.FLOAT16


def _large_activation_model():
    """x * 3000 -> MatMul with weights ~±100 (activations reach ~1e6) -> / 2e4 -> + bias -> Relu."""
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["a"]),
        helper.make_node("MatMul", ["a", "w"], ["big"]),
        helper.make_node("Div", ["big", "d"], ["c"]),
        helper.make_node("Add", ["c", "b"], ["e"]),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    inits = [
        ("k", np.array(3000.0, np.float32)),
        ("w", rand(16, 8, seed=1, scale=100.0)),
        ("d", np.array(2e4, np.float32)),
        ("b", rand(8, seed=2)),
    ]
    return graph_model(nodes, [("x", ["n", 16])], [("y", ["n", 8])], inits, opset=13)


def _node(model, op):
    return next(n for n in model.graph if n.op_type == op)


def test_fp16_keeps_nodes_with_overflowing_activations_given_samples():
    x = rand(5, 16, seed=7)
    reference = Runner(_large_activation_model()).run({"x": x})["y"]
    peak = np.abs(rand(3, 16, seed=3) * 3000 @ rand(16, 8, seed=1, scale=100.0)).max()
    assert peak > 10 * F16_ACTIVATION_LIMIT  # the MatMul's output is far beyond float16's safe range

    # Constants only (no samples): the MatMul becomes float16 and would write inf on a float16 device. ONNX
    # Runtime's CPU provider runs most float16 ops in float32 (it drops the Cast pairs), so it does not show
    # that.
    blind = _large_activation_model()
    apply("to-fp16", blind)
    assert _node(blind, "MatMul").outputs[0].dtype == ir.DataType.FLOAT16
    with np.errstate(over="ignore"):
        assert not np.isfinite(
            rand(3, 16, seed=3).astype(np.float16)
            * np.float16(3000)
            @ rand(16, 8, seed=1, scale=100.0).astype(np.float16)
        ).all()

    model = _large_activation_model()
    p = ToFp16(samples=[{"x": rand(n, 16, seed=n)} for n in (1, 3, 6)])
    assert p(model).rewrites > 0
    matmul, div = _node(model, "MatMul"), _node(model, "Div")
    assert sorted(p.kept_for_range) == sorted(
        [matmul.name or "MatMul", div.name or "Div"]
    )  # writes / reads 'big'
    assert matmul.outputs[0].dtype == ir.DataType.FLOAT and div.inputs[0].dtype == ir.DataType.FLOAT
    assert matmul.inputs[1].dtype == ir.DataType.FLOAT  # its weights too
    assert _node(model, "Mul").outputs[0].dtype == ir.DataType.FLOAT16  # 3000 fits: converted
    assert _node(model, "Add").outputs[0].dtype == ir.DataType.FLOAT16  # back in range after the Div
    got = Runner(model).run({"x": x})["y"]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference, atol=ToFp16.tolerance.atol, rtol=ToFp16.tolerance.rtol)
    assert_idempotent(ToFp16(samples=p.samples), model)


def test_pipeline_hands_its_test_inputs_to_to_fp16():
    model = _large_activation_model()
    p = ToFp16()
    result = verify(model, [p], "x:1x16,4x16,9x16", tol=FP32)
    assert result.stages[1].verified == "yes" and result.stages[1].max_abs < 1e-2
    assert _node(model, "MatMul").outputs[0].dtype == ir.DataType.FLOAT  # measured on the pipeline's inputs
    assert len(p.kept_for_range) == 2 and p.samples is None  # lent for the run only
    with pytest.raises(TypeError):
        ToFp16(samples="x.npy")
