"""TensorRT and Ascend targets: support checks from the versioned tables, the emitted build files
checked against the shapes, and plain words where the toolchain is absent."""

import json

import pytest
from onnx import TensorProto, helper

import ocrgraft.targets.ascend as ascend
from ocrgraft.converter.cli import main
from ocrgraft.converter.convert import convert
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.targets import get_target
from ocrgraft.targets.tables import load_table
from ocrgraft.targets.tensorrt import tensorrt_available

from conftest import DYN_SHAPES, make_dynamic_model


def _save(tmp_path, proto, name):
    import onnx

    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, path)
    return path


def _one_op_model(op: str, opset: int, shape=("n", 3, 3), out_shape=("n",)):
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])],
        op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_tables_cite_their_source_and_differ_by_version():
    t86, t10 = load_table("tensorrt", "8.6"), load_table("tensorrt", "10.1")
    assert "onnx-tensorrt" in t86.source and "release/8.6-GA" in t86.source and t86.opsets == (1, 17)
    assert t10.opsets == (9, 20) and "Input must be 4D" in t10.ops["GridSample"]
    a5, a8 = load_table("ascend", "5.0.4"), load_table("ascend", "8.0")
    assert "GridSample" not in a5.ops and "GridSample" in a8.ops
    assert "255" in a8.ops["AveragePool"]
    with pytest.raises(OcrgraftError, match="no tensorrt op table for version '7.0'"):
        load_table("tensorrt", "7.0")


def test_trt_emits_build_script_and_trtexec_with_the_profile(tmp_path):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    conv = convert(
        onnx=src,
        target="trt",
        out=tmp_path / "out",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        target_options={"quantize": "fp16"},
    )
    trt_dir = conv.out_dir / "trt"
    cfg = json.loads((trt_dir / "engine_config.json").read_text())
    assert cfg["profiles"] == {"x": [[1, 3, 8, 16], [2, 3, 8, 40], [3, 3, 8, 64]]}
    assert cfg["fp16"] and not cfg["int8"] and cfg["onnx"] == "../model.onnx"
    cmd = (trt_dir / "trtexec.sh").read_text()
    assert "--minShapes=x:1x3x8x16 --optShapes=x:2x3x8x40 --maxShapes=x:3x3x8x64 --fp16" in cmd
    compile((trt_dir / "build_engine.py").read_text(), "build_engine.py", "exec")
    assert "set_shape(name, lo, opt, hi)" in (trt_dir / "build_engine.py").read_text()
    report = conv.report
    assert report["support"]["ok"] and not report["build"]["built"]
    assert "no TensorRT engine built" in report["build"]["summary"]
    assert report["build"]["command"].startswith("trtexec --onnx=../model.onnx")


@pytest.mark.skipif(
    tensorrt_available() is None, reason="runs only where TensorRT cannot build (here: always)"
)
def test_trt_build_requested_without_tensorrt_says_why(tmp_path, capsys):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    rc = main(
        [
            "convert",
            "--onnx",
            str(src),
            "-t",
            "trt",
            "--build",
            "--out",
            str(tmp_path / "out"),
            "--shapes",
            DYN_SHAPES,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert f"no TensorRT engine built: {tensorrt_available()}" in out
    assert not (tmp_path / "out" / "dyn-trt" / "trt" / "model.engine").exists()


@pytest.mark.skipif(
    tensorrt_available() is not None, reason=f"needs TensorRT and a CUDA GPU: {tensorrt_available()}"
)
def test_trt_build_runs_and_matches_onnxruntime(tmp_path):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    conv = convert(
        onnx=src,
        target="trt",
        out=tmp_path / "out",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        target_options={"build": "1"},
    )
    assert conv.report["build"]["built"]
    assert max(conv.report["build"]["details"]["max_abs_vs_onnxruntime"].values()) < 1e-3


def test_unsupported_op_is_named_before_any_compiler_runs(tmp_path, capsys):
    det = _save(tmp_path, _one_op_model("Det", 13), "det")
    rc = main(
        [
            "convert",
            "--onnx",
            str(det),
            "-t",
            "trt",
            "--out",
            str(tmp_path / "out"),
            "--shapes",
            "x:1x3x3,4x3x3",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "target trt" in err and "Det (1 node): listed as unsupported" in err
    assert not (tmp_path / "out").exists()
    mish = _save(tmp_path, _one_op_model("Mish", 18, ("n", 4), ("n", 4)), "mish")
    rc = main(
        [
            "convert",
            "--onnx",
            str(mish),
            "-t",
            "ascend",
            "--out",
            str(tmp_path / "out"),
            "--shapes",
            "x:1x4,2x4",
        ]
    )
    err = capsys.readouterr().err
    assert (
        rc == 1 and "target ascend" in err and "Mish (1 node): not in the table" in err and "opset 18" in err
    )


def test_model_newer_than_the_target_reads_is_lowered_to_its_opset(tmp_path):
    relu = _save(tmp_path, _one_op_model("Relu", 18, ("n", 4), ("n", 4)), "relu")
    conv = convert(
        onnx=relu, target="ascend", out=tmp_path / "out", shapes="x:1x4,3x4", progress=lambda m: None
    )
    assert "convert-opset(opset=17)" in conv.report["passes"]
    assert conv.result.model.opset_imports[""] == 17 and conv.report["all_verified"]
    conv = convert(onnx=relu, target="ort", out=tmp_path / "out", shapes="x:1x4,3x4", progress=lambda m: None)
    assert not any(p.startswith("convert-opset") for p in conv.report["passes"])


def test_ascend_writes_atc_with_shape_ranges_and_soc(tmp_path):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    conv = convert(
        onnx=src,
        target="ascend",
        out=tmp_path / "out",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        target_options={"soc": "Ascend910B"},
    )
    script = (conv.out_dir / "ascend" / "atc.sh").read_text()
    assert "atc --framework=5 --model=../model.onnx --output=om/dyn --input_format=NCHW" in script
    assert "'--input_shape=x:[1~3,3,8,16~64]'" in script and "--soc_version=Ascend910B" in script
    assert not conv.report["build"]["built"] and "`atc`" in conv.report["build"]["summary"]


@pytest.mark.parametrize(
    "shapes, expected",
    [
        (
            {"imgs": [(1, 1, 32, 32), (4, 1, 32, 100), (16, 1, 32, 6400)]},
            ["--input_shape=imgs:-1,1,32,-1", "--dynamic_dims=1,32;4,100;16,6400"],
        ),
        ({"x": [(1, 3, 24, 94), (4, 3, 24, 94)]}, ["--input_shape=x:-1,3,24,94", "--dynamic_batch_size=1,4"]),
        (
            {"x": [(1, 3, 320, 320), (1, 3, 640, 960)]},
            ["--input_shape=x:1,3,-1,-1", "--dynamic_image_size=320,320;640,960"],
        ),
    ],
)
def test_ascend_gears(shapes, expected):
    assert ascend.shape_flags(shapes, "gears") == expected


def test_ascend_range_form_matches_the_crnn_seed():
    assert ascend.shape_flags({"imgs": [(1, 1, 32, 32), (4, 1, 32, 100), (16, 1, 32, 6400)]}, "range") == [
        "--input_shape=imgs:[1~16,1,32,32~6400]"
    ]


def test_ascend_avgpool_kernel_limit():
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 300])],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 300])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])],
    )
    import onnx_ir as ir

    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    check = get_target("ascend").check_support(model)
    assert not check.ok and "exceeds 255" in check.unsupported[0]
    assert get_target("trt").check_support(model).ok


def test_every_target_pass_exists():
    from ocrgraft.passes import get_pass
    from ocrgraft.targets import TARGETS

    for cls in TARGETS.values():
        for spec in cls.passes:
            assert get_pass(spec).name == spec.split("(")[0]


@pytest.mark.parametrize(
    "target,options,message",
    [
        (
            "trt",
            {"chip": "bm1684"},
            "--chip does not apply to target trt (its options: --target-version, --quantize, --build)",
        ),
        ("ort", {"quantize": "fp16"}, "--quantize does not apply to target ort (its options: none)"),
        ("ascend", {"quantize": "int8"}, "--quantize does not apply to target ascend"),
        ("ascend", {"soc": "310P3"}, "--soc 310P3: not a valid value for target ascend"),
        ("sophon", {"chip": "bm1686"}, "--chip bm1686: target sophon takes bm1684x, bm1684"),
        ("trt", {"quantize": "bf16"}, "--quantize bf16: target trt takes F32, F16, INT8"),
        ("ort", {"version": "8.6"}, "--target-version does not apply to target ort"),
        ("trt", {"version": "9.0"}, "--target-version 9.0: target trt takes 10.1, 8.6"),
    ],
)
def test_target_options_are_checked_before_any_work(tmp_path, capsys, target, options, message):
    from ocrgraft.converter.cli import main

    flags = [f"--{'target-version' if k == 'version' else k}" for k in options]
    argv = ["convert", "crnn", "--target", target, "--out", str(tmp_path / "out")]
    for flag, value in zip(flags, options.values()):
        argv += [flag, value]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"ocrgraft: error: {message}" or message in err.strip(), err
    assert "exported" not in err and not (tmp_path / "out").exists()


def test_precision_has_one_spelling():
    from ocrgraft.targets import target_class

    assert target_class("trt").check_options({"quantize": "fp16"}) == {"quantize": "F16"}
    assert target_class("sophon").check_options({"quantize": "int8", "chip": "bm1684"}) == {
        "quantize": "INT8",
        "chip": "bm1684",
    }
