"""Uneven AdaptiveAvgPool: the torch frontend's rewrite before export (both exporters), and the
adaptive-avgpool-to-pool pass for ONNX files that arrive in torch 2.13's gathered form (real exports), each
against torch at several shapes; crafted graphs without the pattern.

What the exporters do (see the pass's docstring in ocrgraft/passes/adaptive_avgpool_to_pool.py): the
TorchScript exporter refuses every uneven size; the export-based one writes Transpose -> GatherND ->
Transpose -> ReduceMean (windows of one size) or -> Where -> Gather/Add sums -> Div (windows of different
sizes)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from onnx import helper

from ocrgraft.core.graph import opset_of
from ocrgraft.core.modelio import to_ir, to_proto
from ocrgraft.core.runner import Runner
from ocrgraft.passes import CLEANUP_PASSES
from ocrgraft.targets import get_target

from test_passes_common import (
    apply,
    assert_idempotent,
    assert_untouched,
    export_torch,
    graph_model,
    ops,
    rand,
    verify,
)

PASS = "adaptive-avgpool-to-pool"
GATHERED = {"GatherND", "Gather", "Where", "Range", "Shape", "Expand", "Concat", "Div", "Add"}
TOL = 1e-5


class Net(torch.nn.Module):
    """Conv -> AdaptiveAvgPool2d -> Relu: the pool reads a feature map, not the graph input."""

    def __init__(self, size, channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(size)

    def forward(self, x):
        return torch.relu(self.pool(self.conv(x)))


def export_dynamo(module, shape, dynamic=(), optimize=True):
    """The torch.export-based exporter (opset 18), dims in `dynamic` as dynamic dims of input x."""
    spec = {axis: torch.export.Dim(f"d{axis}", min=1 if axis == 0 else 4, max=512) for axis in dynamic}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            (torch.randn(*shape),),
            dynamo=True,
            opset_version=18,
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=(spec or None,),
            verbose=False,
            optimize=optimize,
        )
    return to_ir(program.model_proto)


def same_as_torch(model, module, shapes):
    """ONNX Runtime against torch on random non-zero inputs at each shape, within TOL."""
    runner = Runner(model)
    for i, shape in enumerate(shapes):
        x = rand(*shape, seed=i + 1)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        got = runner.run({"x": x})["y"]
        assert got.shape == expected.shape, (shape, got.shape, expected.shape)
        np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL, err_msg=str(shape))


def shape_text(shapes):
    return "x:" + ",".join("x".join(map(str, s)) for s in shapes)


# -- the torch frontend: rewritten before export, so neither exporter writes the gathered form --------------

FRONTEND_CASES = {
    # output size, example shape, dynamic axes of x, shapes checked, ops expected besides Conv/Relu
    "7x10 -> 3x4": (
        (3, 4),
        (2, 3, 7, 10),
        {0: "n"},
        [(1, 3, 7, 10), (3, 3, 7, 10)],
        {"AveragePool", "MatMul"},
    ),
    "8x12 -> 3x5": ((3, 5), (2, 3, 8, 12), {0: "n"}, [(1, 3, 8, 12), (2, 3, 8, 12)], {"MatMul"}),
    "(3, None), dynamic width": (
        (3, None),
        (2, 3, 8, 20),
        {0: "n", 3: "w"},
        [(1, 3, 8, 16), (2, 3, 8, 45)],
        {"MatMul"},
    ),
}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("case", list(FRONTEND_CASES))
def test_torch_frontend_rewrites_uneven_pools_before_export(case, exporter):
    from ocrgraft.frontends.torch import apply_rewrites

    size, shape, dynamic, shapes, expected = FRONTEND_CASES[case]
    module = Net(size).eval()
    rewritten, notes = apply_rewrites(module, "ascend", exporter)
    assert len(notes) == 1 and "uneven-adaptive-avgpool" in notes[0]
    if exporter == "dynamo":
        model = export_dynamo(rewritten, shape, [a for a in dynamic], optimize=True)
    else:  # refuses these sizes without the rewrite
        example = (torch.randn(*shape),)
        model = export_torch(
            rewritten, example, 17, input_names=["x"], output_names=["y"], dynamic_axes={"x": dynamic}
        )
    assert {k for k in ops(model) if k not in ("Conv", "Relu", "Constant")} == expected
    same_as_torch(model, module, shapes)  # against the unrewritten module
    assert_untouched(PASS, model)


# -- the export-based exporter: every gathered form becomes a pool, a mean or an averaging MatMul --------

CASES = {
    # output size, input shape, dynamic axes, shapes checked, ops expected after the pass
    "windows of one size (7x10 -> 3x4)": (
        (3, 4),
        (2, 3, 7, 10),
        (0,),
        [(1, 3, 7, 10), (2, 3, 7, 10), (3, 3, 7, 10)],
        {"AveragePool": 1, "MatMul": 1},
    ),
    "uneven windows (8x12 -> 3x5)": (
        (3, 5),
        (2, 3, 8, 12),
        (0,),
        [(1, 3, 8, 12), (3, 3, 8, 12)],
        {"MatMul": 2, "Transpose": 2},
    ),
    "whole height, uneven width (7x10 -> 1x3)": (
        (1, 3),
        (1, 3, 7, 10),
        (),
        [(1, 3, 7, 10)],
        {"ReduceMean": 1, "AveragePool": 1},
    ),
    "(None, 4) on a static 7x10": ((None, 4), (1, 3, 7, 10), (), [(1, 3, 7, 10)], {"MatMul": 1}),
    "(3, None), dynamic batch and width": (
        (3, None),
        (2, 3, 8, 20),
        (0, 3),
        [(1, 3, 8, 12), (2, 3, 8, 40), (3, 3, 8, 97)],
        {"MatMul": 1, "Transpose": 2},
    ),
    "(None, 3), dynamic height": (
        (None, 3),
        (1, 3, 12, 10),
        (2,),
        [(1, 3, 5, 10), (1, 3, 12, 10), (1, 3, 33, 10)],
        {"AveragePool": 1},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dynamo_export_becomes_compact_and_stays_exact(case):
    size, shape, dynamic, shapes, expected = CASES[case]
    module = Net(size, shape[1]).eval()
    model = export_dynamo(module, shape, dynamic)
    assert ops(model)["GatherND"] == 1  # the gathered form this pass is for
    same_as_torch(model, module, shapes)  # the export itself is right at these shapes
    inputs = [str(d) for d in model.graph.inputs[0].shape]
    result = verify(model, [PASS], shape_text(shapes))  # each stage against the export in ONNX Runtime
    assert result.stages[1].rewrites == 1
    after = ops(model)
    assert not GATHERED & set(after), after
    assert {k: v for k, v in after.items() if k not in ("Conv", "Relu")} == expected
    assert [str(d) for d in model.graph.inputs[0].shape] == inputs  # dynamic dims stay dynamic
    same_as_torch(model, module, shapes)
    assert_idempotent(PASS, model)


def test_without_the_exporters_optimizer_after_cleanup():
    """ocrgraft exports models with an RNN with the exporter's optimizer off: a much longer index computation
    that the generic clean-ups fold back to the same pattern."""
    module = Net((3, None)).eval()
    model = export_dynamo(module, (2, 3, 8, 20), (0, 3), optimize=False)
    shapes = [(1, 3, 8, 16), (2, 3, 8, 45)]
    result = verify(model, [*CLEANUP_PASSES, PASS], shape_text(shapes))  # a generic pass: it runs in both
    assert [s.rewrites for s in result.stages if s.name == PASS] == [1, 0]
    assert not GATHERED & set(ops(model))
    same_as_torch(model, module, shapes)


def test_unbatched_and_1d_adaptive_pools():
    pool2d = torch.nn.AdaptiveAvgPool2d((3, 4))  # an unbatched [C, H, W] map: MatMuls only
    model = export_dynamo(pool2d, (2, 7, 10))
    assert apply(PASS, model) == 1
    assert set(ops(model)) == {"MatMul", "Transpose"}
    same_as_torch(model, pool2d, [(2, 7, 10)])
    pool1d = torch.nn.AdaptiveAvgPool1d(3)  # 10 -> 3: windows of 4, stride 3
    model = export_dynamo(pool1d, (1, 2, 10))
    assert apply(PASS, model) == 1
    assert ops(model)["AveragePool"] == 1 and ops(model)["GatherND"] == 0
    same_as_torch(model, pool1d, [(1, 2, 10)])


def test_target_pipelines_run_it_after_lowering_the_opset():
    """Ascend and Sophon pipelines (the pass is generic) lower the opset after it; the result is in their
    op tables."""
    module = Net((3, 5)).eval()
    source = export_dynamo(module, (2, 3, 8, 12), (0,))
    for name in ("ascend", "sophon"):
        target = get_target(name)
        model = to_ir(to_proto(source))  # a copy
        lower = [f"convert-opset(opset={target.max_opset()})"] if opset_of(model) > target.max_opset() else []
        result = verify(model, [*CLEANUP_PASSES, *lower, *target.passes], "x:1x3x8x12,4x3x8x12")
        assert any(s.name == PASS and s.rewrites == 1 for s in result.stages), name
        assert ops(model)["GatherND"] == 0 and ops(model)["MatMul"] == 2
        assert target.check_support(model).ok, (name, target.check_support(model).unsupported)
        same_as_torch(model, module, [(1, 3, 8, 12), (3, 3, 8, 12)])


# -- what the pass leaves alone ----------------------------------------------------------------------------


def test_torchscript_exporter_refuses_uneven_sizes_and_writes_compact_global_pools():
    with pytest.raises(Exception, match="not factor of input size"):
        export_torch(Net((3, 4)), (torch.randn(1, 3, 7, 10),), input_names=["x"])
    # the global pool with dynamic dims is GlobalAveragePool at every opset: already compact
    module = Net((1, 1)).eval()
    for opset in (11, 13, 17):
        model = export_torch(
            module,
            (torch.randn(1, 3, 7, 10),),
            opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
        )
        assert ops(model)["GlobalAveragePool"] == 1
        assert_untouched(PASS, model)
        same_as_torch(model, module, [(1, 3, 7, 10), (2, 3, 9, 31)])


def test_dynamo_even_and_global_forms_are_left_to_other_passes():
    global_pool = Net((1, 1)).eval()  # ReduceMean, dynamic dims kept
    model = export_dynamo(global_pool, (1, 3, 7, 10), (0, 2, 3))
    assert ops(model)["ReduceMean"] == 1
    assert_untouched(PASS, model)
    same_as_torch(model, global_pool, [(2, 3, 5, 9), (1, 3, 12, 40)])


def test_a_fixed_size_over_a_dynamic_axis_is_left_alone():
    """A fixed output size over a dynamic axis: the exporter bakes the example's window length into a run-time
    index (wrong or failing at other widths); the index is not the identity, so the pass does not touch it."""
    model = export_dynamo(Net((3, 4)), (1, 3, 7, 10), (3,))
    assert ops(model)["GatherND"] == 1 and ops(model)["Range"] >= 1
    assert_untouched(PASS, model)


def _gathered_graph(index, tail="ReduceMean", shape=(1, 2, 7, 10), opset=18):
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[2, 3, 0, 1]),
        helper.make_node("GatherND", ["t", "idx"], ["g"]),
        helper.make_node("Transpose", ["g"], ["p"], perm=[4, 5, 0, 1, 2, 3]),
        helper.make_node(tail, ["p", "axes"], ["y"], keepdims=0),
    ]
    inits = [("idx", index), ("axes", np.array([-3, -1], np.int64))]
    return graph_model(nodes, [("x", list(shape))], [("y", None)], inits, opset=opset)


def test_crafted_gathers_that_are_not_adaptive_pools_are_untouched():
    h = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]])  # 7 -> 3, windows of 3
    w = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [7, 8, 9]])  # 10 -> 4, windows of 3
    index = np.stack(np.broadcast_arrays(h[:, :, None, None], w[None, None]), axis=-1).astype(np.int64)
    pool = _gathered_graph(index)
    verify(pool, [PASS], "x:1x2x7x10")  # the crafted pattern itself is rewritten
    assert ops(pool) == {"AveragePool": 1, "MatMul": 1}
    assert_untouched(PASS, _gathered_graph(index, tail="ReduceMax"))  # a max of windows is not an average
    mixed = index.copy()
    mixed[0, 0, 1, 0] = [3, 4]  # H index depends on the W window: not separable
    assert_untouched(PASS, _gathered_graph(mixed))
    assert_untouched(PASS, _gathered_graph(index[..., ::-1].copy(), shape=(1, 2, 10, 7)))  # a transposed pool
