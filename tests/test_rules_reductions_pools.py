"""eliminate-unit-reductions, pool-to-reduce and maxpool3d-to-2d as rewrite rules: each says in words why it
left a node (--explain), and still rewrites, checked in ONNX Runtime by the Pipeline."""

import numpy as np
from onnx import TensorProto, helper

from ocrgraft.converter.pipeline import Pipeline

from test_passes_common import graph_model, ops


def _run(model, passes, shapes=None):
    result = Pipeline(passes, explain=True).run(model, shapes)
    return result.stages[1], [line for s in result.stages for line in s.explain]


# -- eliminate-unit-reductions -------------------------------------------------------------------------------


def test_a_reduction_over_a_longer_or_dynamic_axis_is_explained():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["a"], name="tall", axes=[2], keepdims=1),
        helper.make_node("ReduceMax", ["x"], ["b"], name="wide", axes=[3], keepdims=1),
        helper.make_node("ReduceSum", ["x"], ["c"], name="chan", axes=[1], keepdims=1),  # size 1: goes
    ]
    outputs = [("a", None), ("b", None), ("c", None)]
    model = graph_model(nodes, [("x", [2, 1, 7, "w"])], outputs, opset=11)
    stage, lines = _run(model, ["eliminate-unit-reductions"], "x:2x1x7x5")
    assert stage.rewrites == 1 and stage.verified == "yes"
    assert sorted(lines) == [
        "ReduceMax at node 'wide': axis 3 is dynamic, so it is not known to be 1 "
        "(UnitReduceMax: condition failed)",
        "ReduceMean at node 'tall': axis 2 has size 7, not 1 (UnitReduceMean: condition failed)",
    ]


def test_a_reduction_whose_axes_are_computed_is_explained():
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=0)]
    model = graph_model(
        nodes, [("x", [2, 3, 1, 4]), ("axes", [1], TensorProto.INT64)], [("y", None)], opset=18
    )
    stage, lines = _run(model, ["eliminate-unit-reductions"], "x:2x3x1x4;axes:1")
    assert stage.rewrites == 0
    assert lines == [
        "ReduceMean at node 'mean': its axes 'axes' are computed at run time "
        "(UnitReduceMean: condition failed)"
    ]


def test_unit_reductions_still_go_at_opset_11_and_18():
    for opset in (11, 18):
        axes_as_input = opset >= 18
        kw = {} if axes_as_input else {"axes": [2]}
        inputs = ["r", "ax"] if axes_as_input else ["r"]
        nodes = [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("ReduceMean", inputs, ["m"], keepdims=0, **kw),
            helper.make_node("ReduceMax", inputs, ["y2"], keepdims=1, **kw),  # a graph output
            helper.make_node("Neg", ["m"], ["y"]),
        ]
        inits = [("ax", np.array([-2], np.int64))] if axes_as_input else []
        model = graph_model(nodes, [("x", ["n", 3, 1, "w"])], [("y", None), ("y2", None)], inits, opset=opset)
        stage, lines = _run(model, ["eliminate-unit-reductions"], "x:1x3x1x5,2x3x1x9")
        assert stage.rewrites == 2 and stage.verified == "yes" and lines == []
        assert ops(model) == {"Relu": 1, "Squeeze": 1, "Neg": 1}
        assert [v.name for v in model.graph.outputs] == ["y", "y2"]
        assert "ax" not in model.graph.initializers  # the ReduceMean / ReduceMax axes went with them


# -- pool-to-reduce ------------------------------------------------------------------------------------------


def test_a_pool_that_is_a_real_pool_is_explained():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], name="real", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["a"], ["b"], name="padded", kernel_shape=[2, 3], pads=[0, 1, 0, 1]),
        helper.make_node("MaxPool", ["b"], ["y"], name="over_w", kernel_shape=[1, 3]),
    ]
    model = graph_model(nodes, [("x", [1, 2, 4, "w"])], [("y", None)])
    stage, lines = _run(model, ["pool-to-reduce"], "x:1x2x4x12")
    assert stage.rewrites == 0 and stage.verified == "unchanged"
    assert sorted(lines) == [
        "AveragePool at node 'padded': it pads its input (pads [0, 1, 0, 1]) "
        "(WholeAxisAveragePool: condition failed)",
        "AveragePool at node 'real': its window 2 (stride 2) on axis 2, an axis of size 4, is neither one "
        "element nor the whole axis (WholeAxisAveragePool: condition failed)",
        "MaxPool at node 'over_w': its window 3 (stride 1) on axis 3, a dynamic axis, is neither one element "
        "nor the whole axis (WholeAxisMaxPool: condition failed)",
    ]


def test_whole_axis_and_one_element_pools_still_go():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[4, 1], strides=[4, 1]),
        helper.make_node("Neg", ["p"], ["y"]),
        helper.make_node("MaxPool", ["x"], ["y2"], kernel_shape=[1, 1]),  # input to output: an Identity stays
    ]
    for opset in (11, 18):
        model = graph_model(nodes, [("x", ["n", 8, 4, "w"])], [("y", None), ("y2", None)], opset=opset)
        stage, lines = _run(model, ["pool-to-reduce"], "x:1x8x4x7,2x8x4x10")
        assert stage.rewrites == 2 and stage.verified == "yes" and lines == []
        assert ops(model) == {"Relu": 1, "ReduceMean": 1, "Neg": 1, "Identity": 1}
        assert [v.name for v in model.graph.outputs] == ["y", "y2"]


# -- maxpool3d-to-2d -----------------------------------------------------------------------------------------


def _unsqueezed_pool(squeeze_axis=0, **pool):
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m2"], name="pool2d", kernel_shape=[2, 2]),  # 2-D: nothing to say
        helper.make_node("Unsqueeze", ["m2", "ax"], ["u"]),
        helper.make_node("MaxPool", ["u"], ["p"], name="pool3d", **pool),
        helper.make_node("Squeeze", ["p", "sq"], ["y"], name="squeeze"),
    ]
    inits = [("ax", np.array([0], np.int64)), ("sq", np.array([squeeze_axis], np.int64))]
    return graph_model(nodes, [("x", ["n", 8, 13, "w"])], [("y", None)], inits, opset=18)


def test_a_3d_pool_that_is_not_on_a_4d_tensor_is_explained():
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="true3d", kernel_shape=[2, 2, 2])]
    model = graph_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)])
    stage, lines = _run(model, ["maxpool3d-to-2d"], None)
    assert stage.rewrites == 0
    assert lines == [
        "MaxPool at node 'true3d': its input 'x' has rank 5, not 4, and is not an Unsqueeze at axis 0 of a "
        "4-D tensor with a Squeeze at axis 0 after the pool (MaxPool3dOn4d: condition failed)"
    ]
    # a Squeeze at another axis: the same reason, at the pool; nothing at the Squeeze or the 2-D pool
    stage, lines = _run(_unsqueezed_pool(1, kernel_shape=[1, 3, 3]), ["maxpool3d-to-2d"], "x:1x8x13x20")
    assert stage.rewrites == 0 and len(lines) == 1
    assert lines[0].startswith("MaxPool at node 'pool3d': its input 'u' has rank 5, not 4"), lines


def test_a_3d_pool_with_same_padding_is_explained():
    model = _unsqueezed_pool(kernel_shape=[3, 3, 3], auto_pad="SAME_UPPER")
    stage, lines = _run(model, ["maxpool3d-to-2d"], "x:1x8x13x20")
    assert stage.rewrites == 0
    assert lines == [
        "MaxPool at node 'pool3d': it pads with auto_pad SAME_UPPER (MaxPool3dOn4d: condition failed)"
    ]


def test_the_unsqueeze_squeeze_form_still_becomes_two_2d_pools():
    model = _unsqueezed_pool(kernel_shape=[2, 3, 3], strides=[2, 1, 2], pads=[0, 1, 1, 1, 1, 1])
    stage, lines = _run(model, ["maxpool3d-to-2d"], "x:1x8x13x20,3x8x13x31")
    assert stage.rewrites == 1 and stage.verified == "yes" and lines == []
    assert ops(model) == {"MaxPool": 3, "Transpose": 2}
    assert all(len(n.attributes.get_ints("kernel_shape")) == 2 for n in model.graph if n.op_type == "MaxPool")
    assert not model.graph.initializers  # the Unsqueeze and Squeeze axes went with them


# -- split-pool ------------------------------------------------------------------------------------------


def test_a_pool_past_the_limit_is_split_and_one_with_padding_is_explained():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], name="wide", kernel_shape=[2, 160], strides=[2, 160]),
        helper.make_node(
            "MaxPool", ["x"], ["b"], name="padded", kernel_shape=[2, 160], strides=[2, 160], pads=[0, 1, 0, 1]
        ),
    ]
    model = graph_model(nodes, [("x", [1, 3, 4, 320])], [("a", None), ("b", None)], opset=13)
    stage, lines = _run(model, ["split-pool(max_kernel=255)"], "x:1x3x4x320")
    assert stage.rewrites == 1 and stage.verified == "yes"
    assert ops(model)["AveragePool"] == 2 and ops(model)["MaxPool"] == 1
    assert lines == [
        "MaxPool at node 'padded': its kernel [2, 160] exceeds 255 elements, but it pads its input "
        "(pads [0, 1, 0, 1], ceil_mode 0), which a chain of pools changes (SplitMaxPool: condition failed)"
    ]
