"""TensorRT and Ascend targets: support checks from the versioned tables, the emitted build files
checked against the shapes, and plain words where the toolchain is absent."""

import json
import shlex

import numpy as np
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


def test_trt_int8_calibrates_on_images_and_trtexec_reads_the_cache(tmp_path, caplog):
    """--quantize INT8 --calib DIR: the images through the recipe's [preprocess] at the profile's opt shape
    become calib_inputs.npz for build_engine.py's calibrator; trtexec.sh reads the calibration.cache it
    writes. Without --calib the noise test inputs calibrate, with a warning and a mark in the report."""
    from PIL import Image

    src = _save(tmp_path, make_dynamic_model(), "dyn")
    recipe = tmp_path / "dyn.toml"
    recipe.write_text('[preprocess]\ncolor = "rgb"\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n')
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i, width in enumerate((20, 40, 90)):
        Image.fromarray(rng.integers(0, 256, (8, width, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    conv = convert(
        onnx=src,
        target="trt",
        out=tmp_path / "out",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        recipe_file=recipe,
        target_options={"quantize": "int8", "calib": str(imgs)},
    )
    trt_dir = conv.out_dir / "trt"
    with np.load(trt_dir / "calib_inputs.npz") as z:
        assert sorted(z.files) == ["000/x", "001/x", "002/x"]
        assert {z[k].shape for k in z.files} == {(1, 3, 8, 40)} and float(z["000/x"].min()) >= -1.0
    script = (trt_dir / "trtexec.sh").read_text()
    assert "--fp16 --int8 --calib=calibration.cache" in script and "[ -f calibration.cache ] ||" in script
    assert "calib_inputs.npz" in (trt_dir / "build_engine.py").read_text()
    precision = conv.report["build"]["precision"]
    assert precision["device"].startswith("INT8 where TensorRT finds it faster")
    assert f"calibrated on 3 inputs from {imgs}" in precision["device"]
    assert "the engine was not built here" in precision["verified"]

    with caplog.at_level("WARNING"):
        noisy = convert(
            onnx=src,
            target="trt",
            out=tmp_path / "out2",
            shapes=DYN_SHAPES,
            progress=lambda m: None,
            target_options={"quantize": "int8"},
        )
    assert "calibrating on the 6 generated test inputs (noise)" in caplog.text
    assert "noise, not real data" in noisy.report["build"]["precision"]["device"]
    with pytest.raises(OcrgraftError, match="--calib applies to INT8 engines"):
        convert(
            onnx=src,
            target="trt",
            out=tmp_path / "out3",
            shapes=DYN_SHAPES,
            progress=lambda m: None,
            target_options={"calib": str(imgs)},
        )


def test_a_keep_list_reaches_trt_and_ascend(tmp_path):
    """precision.json (the Sophon search's format) on the other targets: per-layer FP32 for TensorRT
    (build_engine.py's config and trtexec's --layerPrecisions), ATC's --keep_dtype file for Ascend; a node
    the model lacks is refused by name."""
    import onnx

    from ocrgraft.core.precision import node_key

    src = _save(tmp_path, make_dynamic_model(), "dyn")
    first = convert(onnx=src, target="ort", out=tmp_path / "o", shapes=DYN_SHAPES, progress=lambda m: None)
    conv_node = next(
        n for n in onnx.load(str(first.out_dir / "model.onnx")).graph.node if n.op_type == "Conv"
    )
    keep = tmp_path / "precision.json"
    keep.write_text(json.dumps({"keep": [{"node": node_key(conv_node), "precision": "F32"}]}))
    common = dict(onnx=src, shapes=DYN_SHAPES, progress=lambda m: None)
    trt = convert(
        target="trt", out=tmp_path / "t", target_options={"quantize": "F16", "keep": str(keep)}, **common
    )
    cfg = json.loads((trt.out_dir / "trt" / "engine_config.json").read_text())
    assert cfg["keep_fp32"] == [node_key(conv_node)]
    script = (trt.out_dir / "trt" / "trtexec.sh").read_text()
    assert (
        f"--layerPrecisions={node_key(conv_node)}:fp32" in script and "--precisionConstraints=obey" in script
    )
    assert "1 layer(s) kept in F32" in trt.report["build"]["precision"]["device"]
    asc = convert(target="ascend", out=tmp_path / "a", target_options={"keep": str(keep)}, **common)
    assert (asc.out_dir / "ascend" / "keep_dtype.cfg").read_text() == f"{node_key(conv_node)}\n"
    assert "--keep_dtype=keep_dtype.cfg" in (asc.out_dir / "ascend" / "atc.sh").read_text()
    keep.write_text(json.dumps({"keep": [{"node": "no_such_node"}]}))
    with pytest.raises(OcrgraftError, match="has no node.s. no_such_node"):
        convert(
            target="trt", out=tmp_path / "t2", target_options={"quantize": "F16", "keep": str(keep)}, **common
        )
    with pytest.raises(OcrgraftError, match="--keep applies to F16 and INT8 engines"):
        convert(target="trt", out=tmp_path / "t3", target_options={"keep": str(keep)}, **common)


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
    assert "--input_shape=x:1~3,3,8,16~64" in script and "--soc_version=Ascend910B" in script
    assert not conv.report["build"]["built"] and "`atc`" in conv.report["build"]["summary"]
    # no --quantize: ATC's own default precision, said plainly
    assert "precision_mode" not in script
    assert conv.report["build"]["precision"]["device"].startswith("F16 wherever an operator has a float16")
    md = (conv.out_dir / "report.md").read_text()
    assert "- device precision: **F16 wherever" in md and "--precision_mode_v2 defaults to fp16" in md


@pytest.mark.parametrize(
    "version, quantize, flag",
    [
        ("8.0", "F32", "--precision_mode_v2=origin"),
        ("8.0", "F16", "--precision_mode_v2=fp16"),
        ("5.0.4", "F32", "--precision_mode=force_fp32"),
        ("5.0.4", "F16", "--precision_mode=force_fp16"),
    ],
)
def test_ascend_precision_flag_per_cann_version(tmp_path, version, quantize, flag):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    conv = convert(
        onnx=src,
        target="ascend",
        out=tmp_path / "out",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        target_options={"quantize": quantize, "version": version},
    )
    script = (conv.out_dir / "ascend" / "atc.sh").read_text()
    assert f" {flag} " in script and script.count("precision_mode") == 1
    precision = conv.report["build"]["precision"]
    assert precision["device"] == f"{quantize} ({flag})"
    assert ("not simulated here" in precision["verified"]) == (quantize == "F16")


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


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, ["--input_shape=x:1~3,3,8,16~64", "--soc_version=Ascend310P3"]),
        (
            {"version": "5.0.4", "soc": "Ascend710"},
            ["--input_shape_range=x:[1~3,3,8,16~64]", "--soc_version=Ascend710"],
        ),
        (  # Ascend310 takes no range: gears, one per test shape, with the reason in the report
            {"soc": "Ascend310"},
            ["--input_shape=x:-1,3,8,-1", "--dynamic_dims=1,16;2,40;3,64", "--soc_version=Ascend310"],
        ),
        ({"gears": "1"}, ["--input_shape=x:-1,3,8,-1", "--dynamic_dims=1,16;2,40;3,64"]),
    ],
)
def test_atc_command_per_cann_version_and_soc(tmp_path, options, expected):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    conv = convert(
        onnx=src,
        target="ascend",
        out=tmp_path / "o",
        shapes=DYN_SHAPES,
        progress=lambda m: None,
        target_options=options,
    )
    flags = shlex.split(conv.report["build"]["command"])  # as the shell will pass them to atc
    assert all(flag in flags for flag in expected), flags
    if options.get("soc") == "Ascend310":
        assert "Ascend310 takes no shape range" in conv.report["build"]["details"]["dynamic"]


def test_reports_say_what_to_run_on_the_device(tmp_path):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    common = dict(onnx=src, shapes=DYN_SHAPES, progress=lambda m: None)
    trt = convert(target="trt", out=tmp_path / "t", target_options={"quantize": "INT8"}, **common)
    md = (trt.out_dir / "report.md").read_text()
    assert "## What to run on the device" in md and "`python3 trt/build_engine.py --check`" in md
    assert "trt/calibration.cache" in md and "polygraphy" in md
    asc = convert(target="ascend", out=tmp_path / "a", **common)
    steps = asc.report["build"]["next_steps"]
    assert steps[0].startswith("With the CANN 8.0 toolkit") and "`bash ascend/atc.sh`" in steps[0]
    assert "nothing here ran it" in steps[1]
    assert (
        "## What to run on the device"
        not in (convert(target="ort", out=tmp_path / "o", **common).out_dir / "report.md").read_text()
    )


def test_soc_is_checked_against_the_cann_version(tmp_path):
    src = _save(tmp_path, make_dynamic_model(), "dyn")
    for options, message in (
        ({"version": "5.0.4", "soc": "Ascend310P3"}, "CANN 5 calls the 310P Ascend710"),
        ({"soc": "Ascend710"}, "--soc Ascend710: not a SoC of CANN 8.0's ATC"),
    ):
        with pytest.raises(OcrgraftError, match=message):
            convert(
                onnx=src,
                target="ascend",
                out=tmp_path / "o",
                shapes=DYN_SHAPES,
                progress=lambda m: None,
                target_options=options,
            )


def test_ascend_range_form_per_cann_version_and_the_crnn_seed():
    shapes = {"imgs": [(1, 1, 32, 32), (4, 1, 32, 100), (16, 1, 32, 6400)]}
    assert ascend.shape_flags(shapes, "range", "5.0.4") == ["--input_shape_range=imgs:[1~16,1,32,32~6400]"]
    assert ascend.shape_flags(shapes, "range", "8.0") == ["--input_shape=imgs:1~16,1,32,32~6400"]


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
            "--chip does not apply to target trt (its options: --target-version, --quantize, --calib, "
            "--keep, --build)",
        ),
        (
            "ort",
            {"quantize": "int8"},
            "--quantize does not apply to target ort: it is the float32 reference every other target is "
            "judged by",
        ),
        ("ascend", {"quantize": "int8"}, "--quantize INT8: target ascend cannot: ATC's INT8 takes a model"),
        ("ascend", {"calib": "imgs"}, "--calib does not apply to target ascend"),
        ("ascend", {"soc": "310P3"}, "--soc 310P3: not a valid value for target ascend"),
        ("sophon", {"chip": "bm1686"}, "--chip bm1686: target sophon takes bm1684x, bm1684"),
        ("trt", {"quantize": "bf16"}, "--quantize BF16: target trt cannot: the scripts target TensorRT"),
        ("trt", {"quantize": "int4"}, "--quantize int4: target trt takes F32, F16, INT8"),
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
