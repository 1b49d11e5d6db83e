"""The reference target: the final model in ONNX Runtime (CPU), compared with the source, timed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ocrgraft.core.compare import compare_outputs
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.runner import Runner
from ocrgraft.targets.base import BuildContext, BuildResult, SupportCheck, Target


class OrtTarget(Target):
    name = "ort"
    description = f"ONNX Runtime {ort.__version__} on the CPU: the reference every other target is judged by"
    not_taken = {
        "quantize": "it is the float32 reference every other target is judged by (quantize for a device: "
        "sophon or trt INT8, trt/ascend F16)"
    }

    def check_support(self, model) -> SupportCheck:
        check = SupportCheck(table=f"ONNX Runtime {ort.__version__} CPUExecutionProvider")
        try:
            Runner(model, what="the final model")
        except OcrgraftError as exc:
            check.unsupported.append(str(exc))
        return check

    def build(self, ctx: BuildContext) -> BuildResult:
        runner = Runner(ctx.model_path.read_bytes(), what="the final model")
        worst, elements = 0.0, 0
        for case in ctx.cases:
            diffs = compare_outputs(runner.run(case.feeds), case.expected, ctx.tolerance)
            bad = [d for d in diffs if not d.ok]
            if bad:
                raise VerificationError(
                    f"target ort: final model differs from the source at {case.title}: "
                    f"{bad[0].describe()}; tolerance {ctx.tolerance}"
                )
            worst = max([worst] + [d.max_abs for d in diffs])
            elements += sum(int(np.prod(d.shape)) for d in diffs)
        details = {"max_abs_vs_source": worst, "cases": len(ctx.cases)}
        summary = "ran in ONNX Runtime"
        if ctx.cases and not elements:
            summary = "ran in ONNX Runtime; nothing compared: every output was empty at the test shapes"
        elif ctx.cases:
            drawn = [c for c in ctx.cases if not c.from_image] or ctx.cases
            opt = drawn[len(drawn) // 2]
            details["latency_ms"] = runner.latency_ms(opt.feeds)
            details["latency_shapes"] = {k: list(v) for k, v in opt.shapes.items()}
            summary = (
                f"ran in ONNX Runtime: matches the source on {len(ctx.cases)} inputs "
                f"(max abs err {worst:.2g}); median latency {details['latency_ms']:.2f} ms at {opt.title}"
            )
        return BuildResult(
            built=True,
            summary=summary,
            command=None,
            artifacts=["model.onnx"],
            details=details,
            precision={
                "device": "F32 (ONNX Runtime's CPU provider)",
                "verified": "F32: every stage and the final model against the source in ONNX Runtime",
            },
        )
