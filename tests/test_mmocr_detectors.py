"""MMOCR's PSENet and PANet, the rest of the MMOCR deployment write-up's model list: MMOCR's parameter
names, every target, the opt-in bilinear upsampling, and (make test-slow) every target x exporter.
The ort conversions with both exporters and MMOCR 0.x checkpoints are in tests/test_zoo.py."""

from __future__ import annotations

import onnx
import pytest

from ocrgraft import models
from ocrgraft.converter.convert import convert

SMALL = "input:1x3x64x64,1x3x96x128,2x3x128x128"

# Parameter names MMOCR 1.x's modules give (mmdet ResNet, mmcv ConvModule, MMOCR's necks and heads)
MMOCR_KEYS = {
    "psenet": [
        "backbone.conv1.weight",
        "backbone.layer1.0.conv3.weight",
        "backbone.layer1.0.downsample.1.running_mean",
        "backbone.layer4.2.bn3.running_var",
        "neck.lateral_convs.3.conv.weight",
        "neck.lateral_convs.0.bn.weight",
        "neck.fpn_convs.2.bn.bias",
        "neck.output_convs.conv.weight",
        "det_head.conv1.weight",
        "det_head.bn1.running_var",
        "det_head.conv2.bias",
    ],
    "panet": [
        "backbone.stem.0.weight",
        "backbone.stem.7.running_mean",
        "backbone.layer1.0.downsample.0.weight",
        "backbone.layer4.1.bn2.weight",
        "neck.reduce_conv_c2.0.weight",
        "neck.reduce_conv_c5.1.running_var",
        "neck.fpems.0.up_add1.depthwise_conv.weight",
        "neck.fpems.1.down_add3.pointwise_conv.bias",
        "neck.fpems.1.down_add3.bn.weight",
        "det_head.conv1.weight",
        "det_head.conv2.weight",
    ],
}
PARAMETERS = {"psenet": (28.0e6, 30.0e6), "panet": (11.5e6, 12.5e6)}  # ResNet-50 + FPNF; ResNet-18 + FPEM


def _modes(model: onnx.ModelProto) -> list[bytes]:
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    return [next((a.s for a in n.attribute if a.name == "mode"), b"nearest") for n in resizes]


@pytest.mark.parametrize("name", ["psenet", "panet"])
def test_parameter_names_and_sizes_are_mmocr_s(name):
    model = models.build(name)
    state = model.state_dict()
    missing = [k for k in MMOCR_KEYS[name] if k not in state]
    assert not missing, missing
    low, high = PARAMETERS[name]
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert tuple(state["det_head.conv2.weight"].shape[:2]) == ((7, 256) if name == "psenet" else (6, 128))


def test_panet_to_trt_with_bilinear_upsampling_says_it_changed_the_numbers(tmp_path):
    """MMOCR recommends bilinear for PANet on TensorRT: the opt-in pass rewrites every nearest Resize the
    TorchScript export has (their sizes are computed at run time, from the input's own N and C), and the
    report says plainly that this is not an equivalence."""
    conv = convert(
        "panet",
        target="trt",
        out=tmp_path,
        exporter="torchscript",
        shapes=SMALL,
        passes="+resize-nearest-to-bilinear",
        progress=lambda m: None,
    )
    stage = next(s for s in conv.report["stages"] if s["name"] == "resize-nearest-to-bilinear")
    raw = onnx.load(conv.out_dir / "stages" / "00_source.onnx", load_external_data=False)
    assert _modes(raw).count(b"nearest") == stage["rewrites"] == 12  # six per FPEM, two FPEMs
    assert set(_modes(onnx.load(conv.out_dir / "model.onnx"))) == {b"linear"}
    md = (conv.out_dir / "report.md").read_text()
    assert (
        "**changed on purpose**: stage" in md
        and "resize-nearest-to-bilinear changes the model's numbers" in md
    )
    assert not conv.report["all_verified"] and "changed on purpose" in conv.report["parity"]["summary"]
    assert (conv.out_dir / "trt" / "build_engine.py").is_file()


def test_psenet_to_ascend_verifies_every_stage(tmp_path):
    conv = convert("psenet", target="ascend", out=tmp_path, shapes=SMALL, progress=lambda m: None)
    assert conv.report["all_verified"]
    atc = (conv.out_dir / "ascend" / "atc.sh").read_text()
    assert "--input_shape=input:1~2,3,64~128,64~128" in atc  # dynamic batch, height and width


@pytest.mark.slow
@pytest.mark.parametrize("name", ["psenet", "panet"])
@pytest.mark.parametrize("target", ["trt", "ascend", "sophon"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_every_target_with_both_exporters(tmp_path, name, target, exporter):
    """The write-up's table, one cell per model x target x exporter, at the recipe's own min/opt/max
    (sophon: one F32 BModel at the opt shape, simulated)."""
    conv = convert(name, target=target, out=tmp_path, exporter=exporter, progress=lambda m: None)
    r = conv.report
    assert r["all_verified"] and {c["label"].split("#")[0] for c in r["test_inputs"]} == {"min", "opt", "max"}
    if target == "sophon":
        assert r["build"]["built"]
