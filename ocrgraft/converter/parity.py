"""The parity table: the same inputs through the framework, the exported ONNX and the final ONNX must
read the same text (or the same text mask). Elementwise tolerances can pass while a near-tie flips an
argmax; the table shows what a user would see."""

from __future__ import annotations

import numpy as np

from ocrgraft.core.decode import ROWS_PER_CASE, CTCDecoder, ProbMapDecoder, decoder_from
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner

ROUND_OFF = 1e-3  # a probability this close to the threshold may flip by float32 round-off alone
IMAGES_SHOWN = 8  # real images decoded in the parity table (the accuracy table reads them all)


def parity_table(options: dict, raw_model: bytes, result, framework: str = "torch") -> dict | None:
    """Decode the outputs from the framework (the pipeline's reference), the exported ONNX and the final
    ONNX for the first test input at each shape (min / opt / max) and the first real images, whole
    batches as run. A final model in
    a vendor-only form that ONNX Runtime cannot run is left out, and the table says so. Outputs the
    pipeline kept from its checks are used as they are, not run again."""
    if not options or not result.cases:
        return None
    decoder = decoder_from(options)
    name = options.get("output") or next(iter(result.cases[0].expected))
    cases, seen = [], set()
    for case in result.cases:
        shapes = tuple(sorted(case.shapes.items()))
        if case.from_image:
            if sum(c.from_image for c in cases) < IMAGES_SHOWN:
                cases.append(case)  # real images: their text is what a user reads
        elif shapes not in seen:
            seen.add(shapes)
            cases.append(case)
    # an ONNX source is its own framework: its outputs are the raw ONNX's
    outs = [{"source ONNX" if framework == "onnx" else framework: case.expected[name]} for case in cases]
    skipped = []
    artifacts = (("raw ONNX", raw_model),) if framework != "onnx" else ()
    kept = {"raw ONNX": result.raw_outputs, "final ONNX": result.final_outputs}
    for label, model in (*artifacts, ("final ONNX", result.model)):
        try:
            if kept[label] is not None and all(case.title in kept[label] for case in cases):
                got = [_pick(kept[label][case.title], name) for case in cases]
            else:
                runner = Runner(model, what=f"the {label}")
                got = [_pick(runner.run(case.feeds), name) for case in cases]
        except OcrgraftError as exc:
            if label == "raw ONNX":
                raise
            skipped.append(f"{label} not decoded: {exc}")
            continue
        for o, g in zip(outs, got):
            o[label] = g
    sources = list(outs[0])
    table = (
        _mask_parity(decoder, cases, outs, sources)
        if isinstance(decoder, ProbMapDecoder)
        else _text_parity(decoder, cases, outs, sources)
    )
    table.update(output=name, sources=sources, skipped=skipped)
    changed = [s.name for s in result.stages if s.semantics == "changes" and s.changed]
    if changed:
        table["summary"] += (
            f" (the final model was changed on purpose by {', '.join(changed)}: differences from "
            f"{sources[0]} are expected there)"
        )
    if skipped:
        table["summary"] += f" ({'; '.join(skipped)})"
    return table


def _text_parity(decoder: CTCDecoder, cases, outs, sources) -> dict:
    rows, same, total = [], 0, 0
    for case, out in zip(cases, outs):
        read = {k: decoder.decode(v) for k, v in out.items()}
        for i in range(len(read[sources[0]])):
            agree = len({read[k][i][0] for k in sources}) == 1
            same, total = same + agree, total + 1
            if i < ROWS_PER_CASE or not agree:  # every sample that reads differently is listed
                rows.append(
                    {
                        "input": case.title,
                        "index": i,
                        "agree": agree,
                        **{k: {"text": read[k][i][0], "confidence": read[k][i][1]} for k in sources},
                    }
                )
    return {
        "kind": "ctc",
        "rows": rows,
        "samples": total,
        "agree": same,
        "all_agree": same == total,
        "summary": f"{same}/{total} samples read the same text in {', '.join(sources)}"
        + ("" if same == total else " -- SOME DIFFER, see report.md"),
    }


def _mask_parity(decoder: ProbMapDecoder, cases, outs, sources) -> dict:
    rows, worst, flips = [], 0.0, 0
    for case, out in zip(cases, outs):
        ref = out[sources[0]]
        row = {
            "input": case.title,
            "pixels_above": int((ref > decoder.threshold).sum()),
            "pixels": int(ref.size),
        }
        for k in sources[1:]:
            err = float(np.abs(out[k].astype(np.float64) - ref).max())
            diff = int(((out[k] > decoder.threshold) != (ref > decoder.threshold)).sum())
            row[k] = {"max_abs": err, "mask_differs": diff}
            worst, flips = max(worst, err), flips + diff
        rows.append(row)
    return {
        "kind": "probability-map",
        "threshold": decoder.threshold,
        "rows": rows,
        "max_abs": worst,
        "mask_differs": flips,
        "all_agree": flips == 0,
        "summary": f"probability map max abs err {worst:.2g} against {sources[0]}; {flips} pixel(s) "
        f"change side of the {decoder.threshold:g} threshold across {len(rows)} inputs"
        + (f", each within {worst:.2g} of it (round-off)" if flips and worst <= ROUND_OFF else ""),
    }


def _pick(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    return outputs[name] if name in outputs else next(iter(outputs.values()))


def parity_markdown(p: dict) -> list[str]:
    sources, lines = p["sources"], ["", "## Parity", "", p["summary"] + ".", ""]
    if p["kind"] == "ctc":
        lines += ["| input | # | " + " | ".join(sources) + " | same |", "|---" * (len(sources) + 3) + "|"]
        for r in p["rows"]:
            cells = [f"`{r[k]['text'] or '∅'}` ({r[k]['confidence']:.4g})" for k in sources]
            lines.append(
                f"| {r['input']} | {r['index']} | "
                + " | ".join(cells)
                + f" | {'yes' if r['agree'] else '**no**'} |"
            )
    else:
        head = "".join(f" {k} max abs err | {k} mask differs |" for k in sources[1:])
        lines += [
            f"| input | pixels > {p['threshold']:g} ({sources[0]}) |{head}",
            "|---" * (2 * len(sources)) + "|",
        ]
        for r in p["rows"]:
            cells = "".join(f" {r[k]['max_abs']:.2g} | {r[k]['mask_differs']} |" for k in sources[1:])
            lines.append(f"| {r['input']} | {r['pixels_above']} / {r['pixels']} |{cells}")
    return lines
