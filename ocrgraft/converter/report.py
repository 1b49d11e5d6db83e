"""report.json (machine-readable) and report.md (for people) for one conversion."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import onnx
import onnxruntime

from ocrgraft.converter.pipeline import FLOOR_MULTIPLE, PipelineResult
from ocrgraft.core.modelio import atomic_file


def build_report(
    *,
    model: str,
    target: str,
    source,
    shapes,
    result: PipelineResult,
    support,
    build,
    passes: list[str],
    out_dir: Path,
    parity: dict | None = None,
    accuracy: dict | None = None,
) -> dict:
    from ocrgraft.core import __version__

    stages = []
    for s in result.stages:
        row = dataclasses.asdict(s)
        row["file"] = f"stages/{Path(s.file).name}" if s.file else None
        stages.append(row)
    return {
        "model": model,
        "target": target,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "ocrgraft": __version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        "source": {"framework": source.framework, "location": source.location, "notes": source.notes},
        "shapes": {k: [list(s) for s in v] for k, v in shapes.shapes.items()},
        "tolerance": {
            "atol": result.tolerance.atol,
            "rtol": result.tolerance.rtol,
            "noise_floor": result.noise_floor,
        },
        "test_inputs": [
            {"label": c.label, "shapes": {k: list(v) for k, v in c.shapes.items()}} for c in result.cases
        ],
        "passes": passes,
        "stages": stages,
        "all_verified": all(s.verified in ("yes", "unchanged", "reference") for s in result.stages),
        "support": {
            "table": support.table,
            "ok": support.ok,
            "unsupported": support.unsupported,
            "notes": support.notes,
        },
        "build": dataclasses.asdict(build),
        "final_model": "model.onnx",
        # decoded text / text mask from torch, exported and final ONNX (zoo recipes with a decoder)
        "parity": parity,
        # word accuracy / CER or mask IoU of every artifact on real images (--images)
        "accuracy": accuracy,
    }


def write_report(report: dict, out_dir: Path) -> None:
    with atomic_file(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    with atomic_file(out_dir / "report.md") as tmp:
        # a name from a file name that is not UTF-8 keeps its bytes visible as \x escapes
        tmp.write_text(render_markdown(report), encoding="utf-8", errors="backslashreplace")


def write_recipe(recipe, shapes, out_dir: Path) -> None:
    """The recipe as this conversion used it (shape range, preprocessing, decoder with its characters),
    so `ocrgraft eval` reads new images the same way later."""
    data = {
        "name": recipe.name,
        "shapes": {k: [list(s) for s in v] for k, v in shapes.shapes.items()},
        **{k: v for k, v in recipe.options.items() if k in ("preprocess", "decoder", "verify")},
    }
    with atomic_file(out_dir / "recipe.json") as tmp:
        tmp.write_text(
            json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8", errors="backslashreplace"
        )


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _err(x) -> str:
    return "–" if x is None else f"{x:.2g}"


def _plain(value) -> str:
    """A detail for people: shapes as 4x1x32x100, numbers to 3 digits, no Python reprs."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value):
            return "x".join(map(str, value))
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _describe_inputs(cases: list[dict]) -> str:
    given = sum(c["label"] == "given" for c in cases)
    text = f"{len(cases) - given} random, non-zero (integer inputs drawn valid for the ops that read them)"
    return text + (f", and {given} given with --inputs" if given else "")


def _floor_text(r: dict) -> str:
    floor = r["tolerance"].get("noise_floor")
    if floor is None:
        return ""
    return (
        f" (the source's noise floor, how far ONNX Runtime's own optimizations move its outputs, is "
        f"{floor:.2g}; atol is at least {FLOOR_MULTIPLE:g} x that)"
    )


def render_markdown(r: dict) -> str:
    lines = [f"# {r['model']} → {r['target']}", ""]
    precision = r["build"].get("precision") or {}
    if precision:
        lines += [
            f"- device precision: **{precision['device']}**",
            f"- verified here: {precision['verified']}",
        ]
    src = r["source"]
    lines += [f"- source: {src['framework']} `{src['location']}`"]
    lines += [f"- note: {n}" for n in src["notes"]]
    lines += [
        "- test shapes: "
        + "; ".join(f"{k}: " + ", ".join("x".join(map(str, s)) for s in v) for k, v in r["shapes"].items()),
        f"- test inputs: {_describe_inputs(r['test_inputs'])}",
        f"- tolerance: atol {r['tolerance']['atol']:g}, rtol {r['tolerance']['rtol']:g}" + _floor_text(r),
        f"- every stage verified: **{'yes' if r['all_verified'] else 'no'}**",
        *[
            f"- **changed on purpose**: stage {s['index']:02d} {s['name']} changes the model's numbers "
            "(it is not an equivalence); the stages after it are compared with it, not with the source"
            for s in r["stages"]
            if s["semantics"] == "changes" and s["changed"]
        ],
        "",
        "## Stages",
        "",
        "Errors are the largest over all test inputs, of this stage's outputs against the source model "
        f"({r['source']['framework']}) and against the stage before it; a stage whose pass changed nothing "
        'is not run again ("unchanged") and its file is not written.',
        "",
        "| # | pass | kind | rewrites | nodes | op changes | pass (s) | check (s) | verified | "
        "max abs err vs source | max rel err vs source | max abs err vs previous stage | tolerance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["stages"]:
        delta = ", ".join(f"{op} {n:+d}" for op, n in s["op_delta"].items()) or "–"
        name = f"[{s['name']}]({s['file']})" if s["file"] else s["name"]
        lines.append(
            f"| {s['index']:02d} | {name} | {s['semantics']} | {s['rewrites']} | {s['nodes']} | {delta} | "
            f"{s['seconds']:.2f} | {s['verify_seconds']:.2f} | {s['verified']} | {_err(s['max_abs'])} | "
            f"{_err(s['max_rel'])} | {_err(s.get('max_abs_prev'))} | {s.get('tolerance') or '–'} |"
        )
    partial = [s for s in r["stages"] if s.get("ran")]
    if partial:
        lines += [
            "",
            "Checked in part: a tensor that a stage computes exactly as an earlier stage did (the same "
            "operators, attributes, weights and inputs) is taken from that stage's run on the same test "
            "input, so these checks ran only the nodes that changed:",
            "",
        ] + [f"- {s['index']:02d} {s['name']}: {s['ran']}" for s in partial]
    explained = [s for s in r["stages"] if s.get("explain")]
    if explained:
        lines += ["", "## Where passes did not rewrite (--explain)", ""]
        for s in explained:
            lines += [f"- {s['index']:02d} {s['name']}:"] + [f"  - {line}" for line in s["explain"]]
    sup, b = r["support"], r["build"]
    lines += [
        "",
        "## Target",
        "",
        f"- support check ({sup['table']}): "
        + ("all ops supported" if sup["ok"] else "unsupported: " + "; ".join(sup["unsupported"])),
    ]
    lines += [f"  - restriction: {n}" for n in sup.get("notes", [])]
    lines += [f"- build: {'done' if b['built'] else 'not built'}: {b['summary']}"]
    if b["command"]:
        lines += ["", "```sh", b["command"], "```"]
    for k, v in b["details"].items():
        lines.append(f"- {k.replace('_', ' ')}: {_plain(v)}")
    if r.get("pictures"):
        lines += ["", "## Pictures", ""] + [f"![{name}]({name})" for name in r["pictures"]]
    elif "pictures" in r:
        lines += ["", "(pictures of the stages: pip install 'ocrgraft[report]', which brings matplotlib)"]
    if b.get("next_steps"):
        lines += ["", "## What to run on the device", ""] + [f"- {step}" for step in b["next_steps"]]
    if r.get("parity"):
        from ocrgraft.converter.parity import parity_markdown

        lines += parity_markdown(r["parity"])
    if r.get("accuracy"):
        from ocrgraft.converter.accuracy import accuracy_markdown

        lines += accuracy_markdown(r["accuracy"])
    lines += [
        "",
        f"_ocrgraft {r['versions']['ocrgraft']}, onnx {r['versions']['onnx']}, "
        f"onnxruntime {r['versions']['onnxruntime']}, {r['created']}_",
        "",
    ]
    return "\n".join(lines)
