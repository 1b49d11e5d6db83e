"""Where a BModel first parts from ONNX: its lowered MLIR (`<model>_<chip>_<q>_final.mlir`, the program
the code generator compiled) runs in TPU-MLIR's interpreter with every layer dumped, on the input where
the BModel differed most, and each layer is compared with ONNX Runtime's value of the same tensor, in the
ONNX graph's order (core.bisect). TPU-MLIR names a layer '<ONNX output name>_<op type>', which is how the
two are paired; layers it fused away (a Conv folded into its Relu) are simply not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ocrgraft.core.bisect import Divergence, first_divergence_from
from ocrgraft.core.compare import similarity
from ocrgraft.core.errors import OcrgraftError

LAYERS = "layers"  # in sophon/: the dumped layers and divergence.md


@dataclass
class LayerReport:
    bmodel: str
    input: str
    compared: int  # layers paired with an ONNX tensor
    divergence: Divergence | None

    def describe(self, quantize: str) -> str:
        if self.divergence is None:
            return (
                f"its lowered MLIR agrees with ONNX Runtime at all {self.compared} layers compared on "
                f"{self.input}, so the difference arises after lowering (code generation or the simulator)"
            )
        text = f"in its lowered MLIR on {self.input}, {self.divergence.describe()}"
        if quantize == "INT8" and self.divergence.compared <= 2:
            text += (
                "; INT8 error from the first layers on points at the calibration: its inputs, or the "
                "mean/scale that turned calibration images into inputs"
            )
        return text


def onnx_names(dumped: list[str], model_path: Path) -> dict[str, str]:
    """Dumped layer name -> ONNX value name: the name itself, or it less one or two '_<suffix>' parts."""
    model = onnx.load(str(model_path), load_external_data=False)
    values = {o for n in model.graph.node for o in n.output if o}
    pairs = {}
    for name in dumped:
        for candidate in (name, name.rsplit("_", 1)[0], name.rsplit("_", 2)[0]):
            if candidate in values:
                pairs[name] = candidate
                break
    return pairs


def layer_judge(thresholds: dict):
    """The precision's output thresholds, applied per layer (TPU-MLIR's own layer checks use cosine and
    euclidean similarity too)."""

    def judge(name: str, got: np.ndarray, expected: np.ndarray) -> str:
        s = similarity(got, expected)
        problems = []
        if s["cosine"] < thresholds["min_cosine"]:
            problems.append(f"cosine {s['cosine']:.6f} < {thresholds['min_cosine']}")
        if s["euclid"] < thresholds["min_euclid"]:
            problems.append(f"euclidean {s['euclid']:.6f} < {thresholds['min_euclid']}")
        if thresholds.get("max_error") is not None and s["max_error"] > thresholds["max_error"]:
            problems.append(
                f"max error {s['max_error']:.3g} of the largest value > {thresholds['max_error']:g}"
            )
        return "; ".join(problems)

    return judge


def bisect_bmodel(
    tc, work: Path, prefix: str, input_npz: str, model_path: Path, thresholds: dict
) -> LayerReport:
    """Dump every layer of `<prefix>_*_final.mlir` (prefix '<name>_<b>b_<chip>') on `input_npz` (relative
    to `work`) and find the first one that differs from ONNX Runtime beyond `thresholds`."""
    finals = sorted(work.glob(f"{prefix}_*_final.mlir"))
    if not finals:
        raise OcrgraftError(f"no {prefix}_*_final.mlir in {work} to compare layer by layer")
    (work / LAYERS).mkdir(exist_ok=True)
    dump = f"{LAYERS}/{finals[0].stem}_{Path(input_npz).stem}.npz"
    tc.run(
        [
            "model_runner",
            "--input",
            input_npz,
            "--model",
            finals[0].name,
            "--dump_all_tensors",
            "--output",
            dump,
        ],
        cwd=work,
        log=work / "logs" / f"layers_{finals[0].stem}.log",
        what=f"model_runner --dump_all_tensors on {finals[0].name}",
    )
    with np.load(work / dump) as z:
        layers = {k: z[k].astype(np.float32) for k in z.files}
    with np.load(work / input_npz) as z:
        feeds = {k: z[k] for k in z.files}
    pairs = onnx_names(list(layers), model_path)
    tensors = {onnx_name: layers[name] for name, onnx_name in pairs.items() if onnx_name not in feeds}
    where = first_divergence_from(model_path.read_bytes(), feeds, tensors, layer_judge(thresholds))
    return LayerReport(finals[0].name, input_npz, len(tensors), where)
