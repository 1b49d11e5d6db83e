"""Reading model outputs the way users do (CTC text with a confidence, a thresholded text mask) and
the parity table: the same inputs through the framework, the exported ONNX and the final ONNX must read the same.

Elementwise tolerances can pass while a near-tie flips an argmax; the table shows what a user would see.
Batches are decoded as they were run: LPRNet's outputs depend on the whole batch, so samples are only
compared within the same batch, never against the same image in another batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocrgraft.converter.verify import Runner
from ocrgraft.errors import OcrgraftError

ROWS_PER_CASE = 2          # decoded samples listed per test input (all of its batch are compared)


@dataclass
class CTCDecoder:
    """Greedy CTC: best class per step, repeats merged, blanks dropped."""

    charset: str
    blank: int = 0
    layout: str = "NTC"          # where batch (N), time (T) and classes (C) sit in the output
    scores: str = "logits"       # logits | log_softmax | probs
    confidence: str = "mean"     # mean of the kept characters' probabilities, or product over all steps

    def probs(self, out: np.ndarray) -> np.ndarray:
        """[N, T, C] probabilities from the raw output."""
        if sorted(self.layout) != ["C", "N", "T"] or out.ndim != 3:
            raise OcrgraftError(f"CTC decoder: layout '{self.layout}' does not fit an output of shape {out.shape}")
        x = np.transpose(out, [self.layout.index(a) for a in "NTC"]).astype(np.float64)
        if self.scores == "log_softmax":
            return np.exp(x)
        if self.scores == "logits":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        if self.scores == "probs":
            return x
        raise OcrgraftError(f"CTC decoder: unknown scores '{self.scores}' (known: logits, log_softmax, probs)")

    def decode(self, out: np.ndarray) -> list[tuple[str, float]]:
        p = self.probs(out)
        classes = len(self.charset) + 1
        if p.shape[-1] != classes:
            raise OcrgraftError(f"CTC decoder: the charset has {len(self.charset)} characters + blank, "
                                f"but the output has {p.shape[-1]} classes")
        blank = self.blank % classes             # -1: the last class
        labels = list(self.charset)
        labels.insert(blank, "")
        best, best_p = p.argmax(-1), p.max(-1)
        result = []
        for idx, prob in zip(best, best_p):
            keep = [t for t in range(len(idx)) if idx[t] != blank and (t == 0 or idx[t] != idx[t - 1])]
            text = "".join(labels[idx[t]] for t in keep)
            if self.confidence == "product":
                conf = float(np.prod(prob))
            else:
                conf = float(np.mean(prob[keep])) if keep else 0.0
            result.append((text, conf))
        return result


@dataclass
class ProbMapDecoder:
    """A detector's probability map read as a text mask: pixels above the threshold."""

    threshold: float = 0.3


def decoder_from(options: dict):
    kind = options.get("kind", "ctc")
    if kind == "ctc":
        if not options.get("charset"):
            raise OcrgraftError("a [decoder] of kind 'ctc' needs its charset (the characters, blank excluded)")
        return CTCDecoder(charset=options["charset"], blank=int(options.get("blank", 0)),
                          layout=options.get("layout", "NTC"), scores=options.get("scores", "logits"),
                          confidence=options.get("confidence", "mean"))
    if kind == "probability-map":
        return ProbMapDecoder(threshold=float(options.get("threshold", 0.3)))
    raise OcrgraftError(f"unknown decoder kind '{kind}' (known: ctc, probability-map)")


def parity_table(options: dict, raw_model: bytes, result, framework: str = "torch") -> dict | None:
    """Decode the outputs from the framework (the pipeline's reference), the exported ONNX and the final ONNX for
    the first test input at each shape (min / opt / max), whole batches as run. A final model in a
    vendor-only form that ONNX Runtime cannot run is left out, and the table says so."""
    if not options or not result.cases:
        return None
    decoder = decoder_from(options)
    name = options.get("output") or next(iter(result.cases[0].expected))
    cases, seen = [], set()
    for case in result.cases:
        shapes = tuple(sorted(case.shapes.items()))
        if shapes not in seen:
            seen.add(shapes)
            cases.append(case)
    outs = [{framework: case.expected[name]} for case in cases]
    skipped = []
    for label, model in (("raw ONNX", raw_model), ("final ONNX", result.model)):
        try:
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
    table = (_mask_parity(decoder, cases, outs, sources) if isinstance(decoder, ProbMapDecoder)
             else _text_parity(decoder, cases, outs, sources))
    table.update(output=name, sources=sources, skipped=skipped)
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
            if i < ROWS_PER_CASE:
                rows.append({"input": case.title, "index": i, "agree": agree,
                             **{k: {"text": read[k][i][0], "confidence": read[k][i][1]} for k in sources}})
    return {"kind": "ctc", "rows": rows, "samples": total, "agree": same, "all_agree": same == total,
            "summary": f"{same}/{total} samples read the same text in {', '.join(sources)}"
                       + ("" if same == total else " -- SOME DIFFER, see report.md")}


def _mask_parity(decoder: ProbMapDecoder, cases, outs, sources) -> dict:
    rows, worst, flips = [], 0.0, 0
    for case, out in zip(cases, outs):
        ref = out[sources[0]]
        row = {"input": case.title, "pixels_above": int((ref > decoder.threshold).sum()), "pixels": int(ref.size)}
        for k in sources[1:]:
            err = float(np.abs(out[k].astype(np.float64) - ref).max())
            diff = int(((out[k] > decoder.threshold) != (ref > decoder.threshold)).sum())
            row[k] = {"max_abs": err, "mask_differs": diff}
            worst, flips = max(worst, err), flips + diff
        rows.append(row)
    return {"kind": "probability-map", "threshold": decoder.threshold, "rows": rows,
            "max_abs": worst, "mask_differs": flips, "all_agree": flips == 0,
            "summary": f"probability map max abs err {worst:.2g} against {sources[0]}; {flips} pixel(s) change side of "
                       f"the {decoder.threshold:g} threshold across {len(rows)} inputs"
                       + (f", each within {worst:.2g} of it (round-off)" if flips else "")}


def _pick(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    return outputs[name] if name in outputs else next(iter(outputs.values()))


def parity_markdown(p: dict) -> list[str]:
    sources, lines = p["sources"], ["", "## Parity", "", p["summary"] + ".", ""]
    if p["kind"] == "ctc":
        lines += ["| input | # | " + " | ".join(sources) + " | same |", "|---" * (len(sources) + 3) + "|"]
        for r in p["rows"]:
            cells = [f"`{r[k]['text'] or '∅'}` ({r[k]['confidence']:.4g})" for k in sources]
            lines.append(f"| {r['input']} | {r['index']} | " + " | ".join(cells) + f" | {'yes' if r['agree'] else '**no**'} |")
    else:
        head = "".join(f" {k} max abs err | {k} mask differs |" for k in sources[1:])
        lines += [f"| input | pixels > {p['threshold']:g} ({sources[0]}) |{head}", "|---" * (2 * len(sources)) + "|"]
        for r in p["rows"]:
            cells = "".join(f" {r[k]['max_abs']:.2g} | {r[k]['mask_differs']} |" for k in sources[1:])
            lines.append(f"| {r['input']} | {r['pixels_above']} / {r['pixels']} |{cells}")
    return lines
