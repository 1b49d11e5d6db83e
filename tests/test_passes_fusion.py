"""fuse-conv-affine and eliminate-reshapes: pattern, no pattern, idempotence, equivalence at several shapes;
and the shape-inference shortcut they rely on (an unchanged graph is not inferred again)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx import helper

from ocrgraft.core.graph import infer_shapes_fresh
from ocrgraft.core.modelio import load
from ocrgraft.passes import GENERIC_PASSES

from test_passes_common import (
    assert_idempotent,
    assert_untouched,
    export_torch,
    graph_model,
    ops,
    rand,
    run,
    verify,
)

SHAPES = "x:1x3x8x5,2x3x8x17,4x3x8x40"


def _bn(prefix: str, channels: int, seed: int):
    rng = np.random.default_rng(seed)
    return [
        (f"{prefix}.scale", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        (f"{prefix}.bias", rand(channels, seed=seed)),
        (f"{prefix}.mean", rand(channels, seed=seed + 1)),
        (f"{prefix}.var", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
    ]


def _conv_bn(bias=True, bn_attrs=None, weight_dtype=np.float32, extra_use=False, opset=13):
    """x[N,3,8,W] -> Conv (3x3, pad 1) -> BatchNormalization -> Relu -> y, batch and width dynamic."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
            ["n"],
            epsilon=1e-3,
            **(bn_attrs or {}),
        ),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    outputs = [("y", ["N", 4, 8, "W"])]
    if extra_use:
        nodes.append(helper.make_node("Neg", ["c"], ["z"]))
        outputs.append(("z", ["N", 4, 8, "W"]))
    inits = [("w", rand(4, 3, 3, 3, seed=1).astype(weight_dtype)), *_bn("bn", 4, 2)]
    if bias:
        inits.append(("b", rand(4, seed=5)))
    return graph_model(nodes, [("x", ["N", 3, 8, "W"])], outputs, inits, opset=opset)


# -- fuse-conv-affine ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_folds_into_the_conv_before_it(bias):
    model = _conv_bn(bias=bias)
    result = verify(model, ["fuse-conv-affine"], SHAPES)
    assert result.stages[1].rewrites == 1
    assert ops(model) == {"Conv": 1, "Relu": 1}
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert len(conv.inputs) == 3 and conv.doc_string == "ocrgraft:fuse-conv-affine"
    assert sorted(model.graph.initializers) == sorted(v.name for v in conv.inputs[1:])  # old weights are gone
    assert [str(d) for d in model.graph.inputs[0].shape] == ["N", "3", "8", "W"]
    assert_idempotent("fuse-conv-affine", model)


def test_batchnorm_output_that_is_a_graph_output_keeps_its_name():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["y"]),
    ]
    model = graph_model(
        nodes,
        [("x", ["N", 3, 8, "W"])],
        [("y", ["N", 4, 8, "W"])],
        [("w", rand(4, 3, 3, 3, seed=1)), *_bn("bn", 4, 2)],
    )
    verify(model, ["fuse-conv-affine"], SHAPES)
    assert ops(model) == {"Conv": 1} and [v.name for v in model.graph.outputs] == ["y"]


def test_batchnorm_after_a_torch_conv_export():
    """The torch.export-based exporter keeps BatchNormalization (the TorchScript one fuses it itself)."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=1, groups=2, bias=False),
        torch.nn.BatchNorm2d(6),
    )
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    model = export_torch(
        net,
        (torch.randn(2, 3, 8, 20),),
        opset=11,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N", 3: "W"}},
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    assert ops(model)["BatchNormalization"] == 2
    verify(model, ["lift-constants", "fuse-conv-affine"], SHAPES)
    assert ops(model)["BatchNormalization"] == 0 and ops(model)["Conv"] == 2
    x = rand(3, 3, 8, 33, seed=9)
    with torch.no_grad():
        np.testing.assert_allclose(
            run(model, {"x": x})["y"], net.eval()(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=1e-4
        )


def test_scale_and_shift_after_conv_fold_in_one_after_the_other():
    """PP-OCRv4's learnable affine blocks: Mul(scalar, Conv) then Add(Conv, scalar); per-channel forms too."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s", "c"], ["m"]),
        helper.make_node("Add", ["m", "t"], ["a"]),
        helper.make_node("Mul", ["a", "s4"], ["y"]),
    ]
    nodes += [
        helper.make_node("Reshape", ["bias", "c111"], ["bias4"]),  # paddle2onnx: a bias viewed at run time
        helper.make_node("Add", ["y0", "bias4"], ["y1"]),
        helper.make_node("Unsqueeze", ["scale", "axes12"], ["scale4"]),  # and a scale unsqueezed
        helper.make_node("Mul", ["y1", "scale4"], ["y"]),
    ]
    nodes[3].output[0] = "y0"
    inits = [
        ("w", rand(4, 3, 3, 3, seed=1)),
        ("b", rand(4, seed=2)),
        ("s", np.array([1.7], np.float32)),
        ("t", np.array(0.3, np.float32)),
        ("s4", rand(1, 4, 1, 1, seed=3)),
        ("bias", rand(4, seed=4)),
        ("c111", np.array([1, -1, 1, 1], np.int64)),
        ("scale", rand(4, seed=5)),
        ("axes12", np.array([1, 2], np.int64)),
    ]
    model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 4, 8, "W"])], inits, opset=13)
    result = verify(model, ["fuse-conv-affine"], SHAPES)
    assert result.stages[1].rewrites == 5 and ops(model) == {"Conv": 1}
    assert len(model.graph.initializers) == 2
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_idempotent("fuse-conv-affine", model)


@pytest.mark.parametrize(
    "case",
    [
        "conv output used twice",
        "training mode",
        "float16 weights",
        "weights are an input",
        "after a non-conv",
        "scale along height",
        "scale over batch",
        "computed scale",
    ],
)
def test_lookalikes_stay(case):
    scaled = {
        "scale along height": ("k", rand(1, 1, 8, 1, seed=4)),
        "scale over batch": ("k", rand(2, 4, 1, 1, seed=4)),
        "computed scale": None,
    }
    if case in scaled:
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Mul", ["c", "k"], ["y"]),
        ]
        if scaled[case] is None:
            nodes.insert(0, helper.make_node("ReduceMean", ["x"], ["k"], keepdims=1))
        inits = [("w", rand(4, 3, 3, 3, seed=1))] + ([scaled[case]] if scaled[case] else [])
        batch = 2 if case == "scale over batch" else "N"
        model = graph_model(nodes, [("x", [batch, 3, 8, "W"])], [("y", [batch, 4, 8, "W"])], inits)
    elif case == "conv output used twice":
        model = _conv_bn(extra_use=True)
    elif case == "training mode":
        model = _conv_bn(bn_attrs={"training_mode": 1}, opset=15)
    elif case == "float16 weights":
        model = _conv_bn(bias=False, weight_dtype=np.float16)
    elif case == "weights are an input":
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["y"]),
        ]
        model = graph_model(
            nodes, [("x", ["N", 3, 8, "W"]), ("w", [4, 3, 1, 1])], [("y", ["N", 4, 8, "W"])], _bn("bn", 4, 2)
        )
    else:
        nodes = [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("BatchNormalization", ["r", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["y"]),
        ]
        model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 3, 8, "W"])], _bn("bn", 3, 2))
    assert_untouched("fuse-conv-affine", model)


# -- eliminate-reshapes -------------------------------------------------------------------------------


def _round_trip(copy_batch: bool = False):
    """x -> Relu -> view(n, 3, -1), n read at run time (or copied with 0) -> view back to Shape(relu)
    -> Neg."""
    target = ["zero_rest"] if copy_batch else ["t"]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"])]
    if not copy_batch:
        nodes += [
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
            helper.make_node("Concat", ["n1", "c_rest"], ["t"], axis=0),
        ]
    nodes += [
        helper.make_node("Reshape", ["r", *target], ["flat"]),
        helper.make_node("Reshape", ["flat", "s"], ["back"]),
        helper.make_node("Neg", ["back"], ["y"]),
    ]
    inits = (
        [("zero_rest", np.array([0, 3, -1], np.int64))]
        if copy_batch
        else [
            ("zero", np.array(0, np.int64)),
            ("axes0", np.array([0], np.int64)),
            ("c_rest", np.array([3, -1], np.int64)),
        ]
    )
    return graph_model(nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 3, 8, "W"])], inits, opset=13)


@pytest.mark.parametrize("copy_batch", [False, True])
def test_reshape_round_trip_goes_with_its_shape_chain(copy_batch):
    model = _round_trip(copy_batch)
    result = verify(model, ["eliminate-reshapes"], SHAPES)
    assert result.stages[1].rewrites == 2
    assert ops(model) == {"Relu": 1, "Neg": 1}
    assert [str(d) for d in model.graph.outputs[0].shape] == ["N", "3", "8", "W"]
    assert_idempotent("eliminate-reshapes", model)


def test_reshape_of_a_reshape_reads_the_first_input():
    """flatten, then view(n, 24, -1) with n read at run time: the second view reads x; the flatten stays for
    its other use."""
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["f"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "rest"], ["t"], axis=0),
        helper.make_node("Reshape", ["f", "t"], ["y"]),
    ]
    inits = [
        ("flat", np.array([0, -1], np.int64)),
        ("zero", np.array(0, np.int64)),
        ("axes0", np.array([0], np.int64)),
        ("rest", np.array([24, -1], np.int64)),
    ]
    model = graph_model(
        nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 24, "W"]), ("f", ["N", None])], inits, opset=13
    )
    verify(model, ["eliminate-reshapes"], SHAPES)
    second = next(n for n in model.graph if n.outputs[0].name == "y")
    assert second.inputs[0].name == "x" and ops(model)["Reshape"] == 2
    assert_idempotent("eliminate-reshapes", model)


def test_reshape_to_its_own_dims_read_one_by_one_or_static():
    nodes = [helper.make_node("Shape", ["x"], ["s"])]
    for axis in (0, 1, 3):
        nodes += [
            helper.make_node("Gather", ["s", f"i{axis}"], [f"d{axis}"], axis=0),
            helper.make_node("Unsqueeze", [f"d{axis}"], [f"u{axis}"], axes=[0]),
        ]
    parts = ["u0", "u1", "eight", "u3"]  # the static dim as a number
    nodes += [
        helper.make_node("Concat", parts, ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["r"]),
        helper.make_node("Reshape", ["r", "copy_infer"], ["y"]),
    ]  # [0, 0, 8, -1]: also its own shape
    inits = [(f"i{a}", np.array(a, np.int64)) for a in (0, 1, 3)] + [
        ("eight", np.array([8], np.int64)),
        ("copy_infer", np.array([0, 0, 8, -1], np.int64)),
    ]
    model = graph_model(nodes, [("x", ["N", 3, 8, "W"])], [("y", ["N", 3, 8, "W"])], inits, opset=11)
    verify(model, ["eliminate-reshapes"], SHAPES)
    assert ops(model) == {"Identity": 1}  # x itself is the output now
    assert_idempotent("eliminate-reshapes", model)


def test_torch_view_and_back_export():
    class Block(torch.nn.Module):
        def forward(self, x):
            n, c = x.shape[0], x.shape[1]
            y = torch.relu(x).view(n, c, -1)
            return torch.sigmoid(y.view(x.shape))

    model = export_torch(
        Block(),
        (torch.randn(2, 3, 8, 5),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N", 3: "W"}},
    )
    assert ops(model)["Reshape"] == 2
    verify(model, ["eliminate-reshapes"], SHAPES)
    assert ops(model)["Reshape"] == 0 and ops(model)["Shape"] == 0


def test_real_reshapes_stay():
    # a flatten; a reshape of a reshape whose target copies dim 1 (0) of the intermediate [N, 8W, 3], which
    # is not x's; and a reshape to another tensor's shape
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["f"]),
        helper.make_node("Reshape", ["x", "n_8w_3"], ["a"]),
        helper.make_node("Reshape", ["a", "copy"], ["b"]),
        helper.make_node("Shape", ["other"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["c"]),
    ]
    inits = [
        ("flat", np.array([0, -1], np.int64)),
        ("n_8w_3", np.array([0, -1, 3], np.int64)),
        ("copy", np.array([0, 0, -1, 1], np.int64)),
    ]
    model = graph_model(
        nodes,
        [("x", ["N", 3, 8, "W"]), ("other", ["N", 8, 3, "W"])],
        [("f", ["N", None]), ("b", ["N", None, 3, 1]), ("c", ["N", 8, 3, "W"])],
        inits,
        opset=13,
    )
    assert_untouched("eliminate-reshapes", model)


# -- shared: the pipeline's shape inference ------------------------------------------------------------


def test_shape_inference_runs_again_only_when_something_changed():
    model = _round_trip()
    assert infer_shapes_fresh(model) > 0
    assert infer_shapes_fresh(model) == 0  # unchanged graph: nothing to do
    relu = next(n for n in model.graph if n.op_type == "Relu")
    relu.outputs[0].shape = ir.Shape([2, 3, 8, 5])  # someone wrote a stale annotation
    assert infer_shapes_fresh(model) == 1
    assert [str(d) for d in relu.outputs[0].shape] == ["N", "3", "8", "W"]
    neg = next(n for n in model.graph if n.op_type == "Neg")
    neg.replace_input_with(0, relu.outputs[0])  # rewired: the Neg output is inferred from Relu now
    before = neg.outputs[0].shape
    infer_shapes_fresh(model)
    assert neg.outputs[0].shape is not before


def test_inference_matches_onnx_on_the_real_recognizer(ppocr_rec):
    """The lean inference writes the same shapes and types as ONNX's own, on a real export."""
    import onnx

    ours = load(ppocr_rec)
    infer_shapes_fresh(ours)
    proto = onnx.shape_inference.infer_shapes(onnx.load(ppocr_rec), strict_mode=False, data_prop=True)
    onnx_shapes = {v.name: v.type for v in [*proto.graph.value_info, *proto.graph.output]}

    def dims(shape):  # data propagation numbers its unknown dims in visiting order
        return ["?" if d is None or str(d).startswith("unk__") else str(d) for d in shape]

    checked = 0
    for node in ours.graph:
        for value in node.outputs:
            if value.name in onnx_shapes and onnx_shapes[value.name].tensor_type.HasField("shape"):
                expected = ir.serde.deserialize_type_proto_for_shape(onnx_shapes[value.name])
                assert dims(value.shape) == dims(expected), value.name
                assert value.dtype == onnx_shapes[value.name].tensor_type.elem_type, value.name
                checked += 1
    assert checked > 400


def test_both_passes_run_in_every_target_pipeline():
    assert {"fuse-conv-affine", "eliminate-reshapes"} <= set(GENERIC_PASSES)


# -- eliminate-unit-reductions ----------------------------------------------------------------------------


def _reduce(op, axes, keepdims, opset, height=1):
    """x[N,3,H,W] -> Relu -> op over `axes` -> Neg -> y; axes as attribute or input as the opset wants."""
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    reduce = helper.make_node(
        op,
        ["r", "axes"] if as_input else ["r"],
        ["m"],
        keepdims=keepdims,
        **({} if as_input else {"axes": axes}),
    )
    kept = ["N", 3, height, "W"]
    out = kept if keepdims else [d for i, d in enumerate(kept) if i not in [a % 4 for a in axes]]
    inits = [("axes", np.array(axes, np.int64))] if as_input else []
    return graph_model(
        [helper.make_node("Relu", ["x"], ["r"]), reduce, helper.make_node("Neg", ["m"], ["y"])],
        [("x", ["N", 3, height, "W"])],
        [("y", out)],
        inits,
        opset=opset,
    )


@pytest.mark.parametrize(
    "op,axes,keepdims,opset",
    [
        ("ReduceMean", [2], 1, 11),
        ("ReduceMean", [-2], 0, 18),
        ("ReduceSum", [2], 0, 13),
        ("ReduceMax", [2], 1, 17),
    ],
)
def test_reduction_over_a_unit_axis_goes(op, axes, keepdims, opset):
    model = _reduce(op, axes, keepdims, opset)
    result = verify(model, ["eliminate-unit-reductions"], "x:1x3x1x5,2x3x1x17,4x3x1x40")
    assert result.stages[1].rewrites == 1 and op not in ops(model)
    assert ops(model).get("Squeeze", 0) == (0 if keepdims else 1)
    assert [str(d) for d in model.graph.outputs[0].shape][-1] == "W"
    assert_idempotent("eliminate-unit-reductions", model)


@pytest.mark.parametrize("axes,height", [([2], 4), ([3], 1), ([1, 2], 1)])
def test_reduction_over_a_longer_or_dynamic_axis_stays(axes, height):
    assert_untouched("eliminate-unit-reductions", _reduce("ReduceMean", axes, 1, 13, height))
