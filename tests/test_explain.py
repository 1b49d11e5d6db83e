"""`apply --explain` and `convert --explain`: where a pass began to match but did not rewrite, with the
condition that failed, in words."""

import json

import numpy as np
import onnx
from onnx import helper
from test_passes_adaptive_pool import Net, export_dynamo
from test_passes_fusion import SHAPES, _conv_bn

from ocrgraft.converter.cli import main
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.core.modelio import save

from test_passes_common import graph_model


def _explain(model, passes, shapes):
    result = Pipeline(passes, explain=True).run(model, shapes)
    return result, [line for s in result.stages for line in s.explain]


def test_a_batchnorm_whose_conv_output_has_another_reader_is_explained():
    result, lines = _explain(_conv_bn(extra_use=True), ["fuse-conv-affine"], SHAPES)
    assert result.stages[1].rewrites == 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("BatchNormalization at node ")
    assert "the output 'c' of Conv" in lines[0] and "is also read by Neg" in lines[0], lines[0]


def test_a_batchnorm_with_computed_parameters_names_them():
    model = _conv_bn()
    bn = next(n for n in model.graph if n.op_type == "BatchNormalization")
    assert bn.inputs[3].name == "bn.mean"
    model.graph.initializers.pop("bn.mean")  # the mean becomes an input: not a constant any more
    bn.inputs[3].const_value = None
    model.graph.inputs.append(bn.inputs[3])
    shapes = SHAPES + ";bn.mean:4"
    _, lines = _explain(model, ["fuse-conv-affine"], shapes)
    assert any(
        "its parameter(s) bn.mean are not constants" in line and "condition failed" in line for line in lines
    )


def test_a_fused_model_explains_nothing():
    result, lines = _explain(_conv_bn(), ["fuse-conv-affine"], SHAPES)
    assert result.stages[1].rewrites == 1 and lines == []


def test_a_gridsample_the_pass_cannot_decompose_is_explained_not_fatal():
    nodes = [helper.make_node("GridSample", ["x", "g"], ["y"], name="tps_sampler", mode="cubic")]
    model = graph_model(nodes, [("x", [1, 2, 5, 6]), ("g", [1, 3, 4, 2])], [("y", [1, 2, 3, 4])], opset=20)
    result, lines = _explain(model, ["decompose-gridsample"], None)
    assert lines == [
        "GridSample at node 'tps_sampler' uses mode 'cubic'; only bilinear and nearest are decomposed"
    ]
    assert result.stages[1].verified == "unchanged"


def test_an_adaptive_pool_form_that_is_not_recognised_is_explained():
    """A fixed output size over a dynamic width: the exporter bakes in a run-time index."""
    model = export_dynamo(Net((3, 4)), (1, 3, 7, 10), (3,))
    _, lines = _explain(model, ["adaptive-avgpool-to-pool"], "x:1x3x7x10")
    assert len(lines) == 1 and "(an AdaptiveAvgPool form?)" in lines[0]
    assert "its index is not a constant grid of windows per axis" in lines[0], lines


def test_apply_and_convert_print_and_report_the_explanation(tmp_path, capsys):
    model = tmp_path / "bn.onnx"
    save(_conv_bn(extra_use=True), model)
    assert (
        main(
            [
                "apply",
                str(model),
                str(tmp_path / "o.onnx"),
                "-p",
                "fuse-conv-affine",
                "--shapes",
                SHAPES,
                "--explain",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "    not rewritten: BatchNormalization at node" in err and "is also read by Neg" in err
    out = tmp_path / "out"
    assert main(["convert", "--onnx", str(model), "--out", str(out), "--shapes", SHAPES, "--explain"]) == 0
    report = json.loads((out / "bn-ort" / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "fuse-conv-affine")
    assert len(stage["explain"]) == 1
    md = (out / "bn-ort" / "report.md").read_text()
    assert "## Where passes did not rewrite (--explain)" in md and "is also read by Neg" in md
    assert [n.op_type for n in onnx.load(tmp_path / "o.onnx").graph.node].count("BatchNormalization") == 1


def test_a_concat_of_squeezes_over_different_axes_is_explained():
    nodes = [
        helper.make_node("Squeeze", ["a", "ax1"], ["sa"], name="sq_a"),
        helper.make_node("Squeeze", ["b", "ax2"], ["sb"], name="sq_b"),
        helper.make_node("Concat", ["sa", "sb"], ["y"], name="join", axis=0),
    ]
    inits = [("ax1", np.array([1], np.int64)), ("ax2", np.array([2], np.int64))]
    model = graph_model(nodes, [("a", [2, 1, 3]), ("b", [2, 3, 1])], [("y", [4, 3])], inits, opset=13)
    result, lines = _explain(model, ["squeeze-after-concat"], None)
    assert result.stages[1].rewrites == 0
    assert lines == ["Concat at node 'join': the Squeezes remove different axes ([1, 2])"]


def test_explain_can_name_the_passes(tmp_path, capsys):
    model = tmp_path / "bn.onnx"
    save(_conv_bn(extra_use=True), model)
    argv = ["apply", str(model), str(tmp_path / "o.onnx"), "-p", "eliminate-identity,fuse-conv-affine"]
    assert main([*argv, "--shapes", SHAPES, "--explain", "fuse-conv-affine"]) == 0
    assert "not rewritten: BatchNormalization" in capsys.readouterr().err
    assert main([*argv, "--shapes", SHAPES, "--explain", "eliminate-identity"]) == 0
    assert "not rewritten" not in capsys.readouterr().err
    assert main([*argv, "--shapes", SHAPES, "--explain", "fuse-conv"]) == 1
    err = capsys.readouterr().err
    assert "--explain names fuse-conv, which this run does not run" in err


def test_without_explain_nothing_is_explained(tmp_path, capsys):
    model = tmp_path / "bn.onnx"
    save(_conv_bn(extra_use=True), model)
    assert (
        main(["apply", str(model), str(tmp_path / "o.onnx"), "-p", "fuse-conv-affine", "--shapes", SHAPES])
        == 0
    )
    assert "not rewritten" not in capsys.readouterr().err
    assert Pipeline(["fuse-conv-affine"], explain=None).explain is False
