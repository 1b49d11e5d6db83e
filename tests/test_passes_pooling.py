"""pool-to-reduce, maxpool3d-to-2d, split-pool: pattern, no pattern, idempotence, equivalence at several
shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnx import helper

from ocrgraft import OcrgraftError
from ocrgraft.core.runner import Runner
from ocrgraft.passes.split_pool import split_plan

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


def _adaptive_pool_graph(opset=11, op="AveragePool", height=4):
    """The torch export of permute(0,3,1,2) -> AdaptiveAvgPool2d((None, 1)) -> squeeze(3), batch and width
    dynamic."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node(op, ["t"], ["p"], kernel_shape=[1, height], strides=[1, height]),
        helper.make_node("Relu", ["p"], ["y"]),
    ]
    return graph_model(nodes, [("x", ["n", 8, height, "w"])], [("y", ["n", "w", 8, 1])], opset=opset)


@pytest.mark.parametrize("opset", [11, 18])
def test_pool_to_reduce_whole_axis_average(opset):
    model = _adaptive_pool_graph(opset)
    result = verify(model, ["pool-to-reduce"], "x:1x8x4x10,2x8x4x37,3x8x4x64")
    assert result.stages[1].rewrites == 1
    assert ops(model)["AveragePool"] == 0 and ops(model)["ReduceMean"] == 1
    assert [str(d) for d in model.graph.inputs[0].shape] == ["n", "8", "4", "w"]
    assert_idempotent("pool-to-reduce", model)


def test_pool_to_reduce_max_and_identity_pool():
    model = _adaptive_pool_graph(op="MaxPool")
    verify(model, ["pool-to-reduce"], "x:1x8x4x10,2x8x4x33")
    assert ops(model)["ReduceMax"] == 1 and ops(model)["MaxPool"] == 0
    # DTRB at image height 32: the adaptive pool over a height-1 map is an identity
    ident = _adaptive_pool_graph(height=1)
    verify(ident, ["pool-to-reduce"], "x:1x8x1x10,2x8x1x33")
    assert set(ops(ident)) == {"Transpose", "Relu"}
    assert_idempotent("pool-to-reduce", ident)


def test_pool_to_reduce_real_torch_export():
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d((None, 1))

        def forward(self, x):
            return self.pool(self.conv(x).permute(0, 3, 1, 2)).squeeze(3)

    model = export_torch(Head(), (torch.randn(1, 3, 4, 20),), input_names=["x"])
    assert ops(model)["AveragePool"] == 1
    verify(model, ["pool-to-reduce"], "x:1x3x4x20")
    assert ops(model)["AveragePool"] == 0


def test_pool_to_reduce_leaves_real_pools_alone():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 3], pads=[0, 1, 0, 1]),
        helper.make_node("MaxPool", ["b"], ["y"], kernel_shape=[1, 3], strides=[1, 1]),
    ]
    model = graph_model(nodes, [("x", [1, 2, 4, "w"])], [("y", None)])
    assert_untouched("pool-to-reduce", model)


# -- maxpool3d-to-2d ---------------------------------------------------------------------------------


class _Lpr(torch.nn.Module):
    """LPRNet's backbone pattern: nn.MaxPool3d over (channel, H, W) of a 4-D tensor."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.p1 = torch.nn.MaxPool3d((1, 3, 3), (1, 1, 1))
        self.p2 = torch.nn.MaxPool3d((3, 3, 3), (2, 1, 2))
        self.p3 = torch.nn.MaxPool3d((1, 3, 3), (4, 1, 2))

    def forward(self, x):
        return self.p3(self.p2(self.p1(self.conv(x))))


def test_maxpool3d_on_4d_from_torch_becomes_valid_and_equal():
    model_t = _Lpr().eval()
    model = export_torch(
        model_t,
        (torch.randn(1, 3, 24, 94),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", 3: "w"}},
    )
    with pytest.raises(OcrgraftError, match="ONNX Runtime cannot load"):
        Runner(model)  # the exported graph is not valid ONNX
    assert apply("maxpool3d-to-2d", model) == 3
    assert all(len(n.attributes.get_ints("kernel_shape")) == 2 for n in model.graph if n.op_type == "MaxPool")
    runner = Runner(model)
    for shape in [(1, 3, 24, 94), (2, 3, 24, 40), (4, 3, 24, 128)]:
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = model_t(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(runner.run({"x": x})["y"], expected, rtol=1e-5, atol=1e-5)
    assert_idempotent("maxpool3d-to-2d", model)


def test_maxpool3d_unsqueeze_squeeze_form():
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
        helper.make_node(
            "MaxPool", ["u"], ["p"], kernel_shape=[2, 3, 3], strides=[2, 1, 2], pads=[0, 1, 1, 1, 1, 1]
        ),
        helper.make_node("Squeeze", ["p", "ax"], ["y"]),
    ]
    model = graph_model(
        nodes, [("x", ["n", 8, 12, "w"])], [("y", None)], [("ax", np.array([0], np.int64))], opset=18
    )
    verify(model, ["maxpool3d-to-2d"], "x:1x8x12x20,3x8x12x31")
    assert ops(model) == {"MaxPool": 2, "Transpose": 2}
    assert_idempotent("maxpool3d-to-2d", model)


def test_maxpool3d_true_5d_pool_is_left_alone():
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2])]
    model = graph_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)])
    assert_untouched("maxpool3d-to-2d", model)


# -- split-pool ----------------------------------------------------------------------------------------


def test_split_plan_matches_the_vendor_example_and_composes():
    plan = split_plan([32, 64], [32, 64], 255)
    assert all(math.prod(k) <= 255 for k, _ in plan)
    assert [math.prod(k[a] for k, _ in plan) for a in (0, 1)] == [32, 64]
    assert split_plan([17, 17], [1, 1], 255) is None


def test_split_pool_average_and_max_equal_at_several_widths():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[4, 80], strides=[4, 80]),
        helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[4, 96], strides=[2, 8]),
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Relu", ["m"], ["z"]),
    ]
    model = graph_model(nodes, [("x", ["n", 3, 4, "w"])], [("y", None), ("z", None)])
    result = verify(model, ["split-pool"], "x:1x3x4x96,1x3x4x163,2x3x4x400")
    assert result.stages[1].rewrites == 2
    pools = [n for n in model.graph if n.op_type in ("AveragePool", "MaxPool")]
    assert len(pools) >= 4 and all(math.prod(n.attributes.get_ints("kernel_shape")) <= 255 for n in pools)
    assert_idempotent("split-pool", model)


def test_split_pool_limit_argument_and_unsplittable_pools():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[17, 17]),
        helper.make_node("AveragePool", ["a"], ["y"], kernel_shape=[2, 8], strides=[2, 8]),
    ]
    model = graph_model(nodes, [("x", [1, 2, 40, 80])], [("y", None)])
    assert_untouched("split-pool", model)  # 17x17 is prime per axis; 2x8 is small
    assert apply("split-pool(max_kernel=4)", model) == 1  # 2x8 -> chain of <= 4-element pools
    assert all(
        math.prod(n.attributes.get_ints("kernel_shape")) <= 4
        for n in model.graph
        if list(n.attributes.get_ints("kernel_shape")) != [17, 17]
    )
    x = rand(1, 2, 40, 80)
    ref = graph_model(nodes, [("x", [1, 2, 40, 80])], [("y", None)])
    np.testing.assert_allclose(Runner(model).run({"x": x})["y"], Runner(ref).run({"x": x})["y"], atol=1e-6)
