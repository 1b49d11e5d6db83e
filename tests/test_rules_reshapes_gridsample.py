"""eliminate-reshapes, decompose-gridsample and legalize-gridsample as rewrite rules: each still rewrites and
stays verified, and `--explain` says in words why a node was not rewritten."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ocrgraft.converter.pipeline import Pipeline

from test_passes_common import graph_model, ops

SHAPES = "x:1x3x8x5,2x3x8x17"


def _explain(model, passes, shapes, verify=True):
    result = Pipeline(passes, explain=True, verify=verify).run(model, shapes)
    return result.stages[1], [line for s in result.stages for line in s.explain]


# -- eliminate-reshapes -------------------------------------------------------------------------------


def test_reshapes_that_stay_are_explained():
    """A Reshape of a Reshape whose target copies (0) a dim of the inner output, and a same-rank view that
    is not the input's own shape."""
    nodes = [
        helper.make_node("Reshape", ["x", "n_8w_3"], ["a"], name="view_a"),
        helper.make_node("Reshape", ["a", "copy"], ["b"], name="view_b"),
        helper.make_node("Reshape", ["x", "swap"], ["c"], name="swap"),
    ]
    inits = [
        ("n_8w_3", np.array([0, -1, 3], np.int64)),
        ("copy", np.array([0, 0, -1, 1], np.int64)),
        ("swap", np.array([0, 8, 3, -1], np.int64)),
    ]
    outputs = [("b", ["N", None, 3, 1]), ("c", ["N", 8, 3, "W"])]
    model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], outputs, inits, opset=13)
    stage, lines = _explain(model, ["eliminate-reshapes"], SHAPES)
    assert stage.rewrites == 0 and stage.verified == "unchanged"
    assert lines == [
        "Reshape at node 'view_b': its target 'copy' may hold a 0 that copies a dim of the Reshape 'view_a' "
        "it reads, so it cannot read 'x' instead",
        "Reshape at node 'swap': element 1 of its target (8) is not provably dim 1 of its input 'x' (3)",
    ]


def test_round_trips_still_go_through_a_bypassed_reshape():
    """view(n, -1) and back to Shape(r) (a graph output); a view to [0, 0] that only shapes prove the
    identity, read by a Reshape of a Reshape, which then reads the flatten's input."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Reshape", ["r", "flat"], ["f"]),
        helper.make_node("Reshape", ["f", "s"], ["y"]),
        helper.make_node("Reshape", ["r", "flat"], ["g"]),
        helper.make_node("Reshape", ["g", "copy2"], ["h"]),
        helper.make_node("Reshape", ["h", "n3_8w"], ["z"]),
        helper.make_node("Neg", ["h"], ["k"]),
    ]
    inits = [
        ("flat", np.array([0, -1], np.int64)),
        ("copy2", np.array([0, 0], np.int64)),
        ("n3_8w", np.array([-1, 3, 8, 17], np.int64)),
    ]
    outputs = [("y", ["N", 3, 8, "W"]), ("z", ["M", 3, 8, 17]), ("k", ["N", None])]
    model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], outputs, inits, opset=13)
    stage, lines = _explain(model, ["eliminate-reshapes"], "x:1x3x8x17,2x3x8x17")
    assert stage.verified == "yes" and lines == []
    # y: chain + own shape; z: chain (to g); then, with shapes, h: own shape, and z: chain through it (to r)
    assert stage.rewrites == 5
    assert ops(model) == {"Relu": 1, "Reshape": 2, "Neg": 1}
    assert [o.name for o in model.graph.outputs] == ["y", "z", "k"]
    assert model.graph.outputs[0].producer().op_type == "Relu"  # r is the output y now
    z = model.graph.outputs[1].producer()
    assert z.op_type == "Reshape" and z.inputs[0].name == "y"  # reads the flatten's input


def test_a_graph_input_reshaped_to_its_own_shape_becomes_an_identity_output():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])]
    model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 3, 8, "W"])], opset=13)
    stage, lines = _explain(model, ["eliminate-reshapes"], SHAPES)
    assert (stage.rewrites, stage.verified, lines) == (1, "yes", [])
    assert ops(model) == {"Identity": 1} and model.graph.outputs[0].name == "y"
    assert not next(iter(model.graph)).metadata_props  # the pass's mark is gone


# -- decompose-gridsample -----------------------------------------------------------------------------


def _two_gridsamples(second_mode: str):
    nodes = [
        helper.make_node("GridSample", ["x", "g"], ["y"], name="rectify", padding_mode="border"),
        helper.make_node("GridSample", ["x", "g"], ["z"], name="resample", mode=second_mode),
    ]
    inputs = [("x", ["n", 3, "h", "w"]), ("g", ["n", 4, 10, 2])]
    return graph_model(nodes, inputs, [("y", ["n", 3, 4, 10]), ("z", ["n", 3, 4, 10])], opset=16)


def test_a_gridsample_left_is_explained_and_the_other_decomposed_and_verified():
    model = _two_gridsamples("bicubic")
    stage, lines = _explain(model, ["decompose-gridsample"], "x:1x3x6x9,2x3x8x20;g:1x4x10x2,2x4x10x2")
    assert lines == [
        "GridSample at node 'resample' uses mode 'bicubic'; only bilinear and nearest are decomposed"
    ]
    assert stage.rewrites == 1 and stage.verified == "yes"
    assert ops(model)["GridSample"] == 1 and ops(model)["Gather"] > 0
    assert [o.name for o in model.graph.outputs] == ["y", "z"]


def test_a_double_gridsample_is_explained():  # ONNX Runtime has no double GridSample: not verified
    nodes = [helper.make_node("GridSample", ["x", "g"], ["y"], name="gs64")]
    double = TensorProto.DOUBLE
    inputs = [("x", [1, 2, 5, 6], double), ("g", [1, 3, 4, 2], double)]
    model = graph_model(nodes, inputs, [("y", [1, 2, 3, 4], double)], opset=16)
    stage, lines = _explain(model, ["decompose-gridsample"], None, verify=False)
    assert stage.rewrites == 0
    assert lines == ["GridSample at node 'gs64' has non-float32 inputs; only float32 is decomposed"]


def test_decomposed_gridsamples_explain_nothing():
    model = _two_gridsamples("nearest")
    stage, lines = _explain(model, ["decompose-gridsample"], "x:1x3x6x9,2x3x8x20;g:1x4x10x2,2x4x10x2")
    assert (stage.rewrites, stage.verified, lines) == (2, "yes", [])
    assert ops(model)["GridSample"] == 0


# -- legalize-gridsample ------------------------------------------------------------------------------


def test_a_contrib_gridsample_is_explained_and_left():
    nodes = [
        helper.make_node("GridSample", ["x", "g"], ["y"], name="contrib_gs", domain="com.microsoft"),
    ]
    model = graph_model(nodes, [("x", [1, 2, 5, 6]), ("g", [1, 3, 4, 2])], [("y", [1, 2, 3, 4])], opset=16)
    model.opset_imports["com.microsoft"] = 1
    stage, lines = _explain(model, ["legalize-gridsample"], None)
    assert stage.rewrites == 0
    assert lines == [
        "GridSample at node 'contrib_gs': it is ONNX Runtime's contrib GridSample (domain com.microsoft), "
        "not ONNX's; this pass leaves it as it is (ContribGridSample: condition failed)"
    ]
    assert next(iter(model.graph)).domain == "com.microsoft" and not next(iter(model.graph)).attributes


def test_legalize_writes_the_defaults_out_and_stays_verified():
    nodes = [
        helper.make_node("GridSample", ["x", "g"], ["y"], name="gs", align_corners=1),
        helper.make_node(
            "GridSample",
            ["x", "g"],
            ["z"],
            name="done",
            mode="bilinear",
            padding_mode="zeros",
            align_corners=0,
        ),
    ]
    inputs = [("x", ["n", 3, "h", "w"]), ("g", ["n", 4, 10, 2])]
    model = graph_model(nodes, inputs, [("y", ["n", 3, 4, 10]), ("z", ["n", 3, 4, 10])], opset=16)
    stage, lines = _explain(model, ["legalize-gridsample"], "x:1x3x6x9,2x3x8x20;g:1x4x10x2,2x4x10x2")
    assert (stage.rewrites, stage.verified, lines) == (1, "yes", [])  # 'done' was already legal
    gs = next(n for n in model.graph if n.name == "gs")
    assert [(k, a.value) for k, a in gs.attributes.items()] == [
        ("align_corners", 1),
        ("mode", "bilinear"),
        ("padding_mode", "zeros"),
    ]
