"""The accuracy table: every artifact that runs here, on the same real images, read the way users read
it — word accuracy and character error rate against the labels for a recognizer, mask IoU against the
first artifact (the framework model) for a detector — and how many images each reads differently from
that first artifact. This is how the seeds judge a conversion (the plate recognizer's PyTorch / ONNX /
TensorRT table, MMOCR's accuracy and hmean per backend).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ocrgraft.core.compare import mask_iou, normalize_text, text_accuracy
from ocrgraft.core.decode import ProbMapDecoder, decoder_from
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.images import Item, Preprocess, load_items
from ocrgraft.core.modelio import load
from ocrgraft.core.progress import steps
from ocrgraft.core.runner import Runner
from ocrgraft.targets import Artifact, get_target

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
ROWS_SHOWN = 20  # per-image rows in report.md (report.json has them all)


def onnx_runner(model) -> RunFn:
    """ONNX Runtime on `model`, the session made at the first image (a model ONNX Runtime cannot load is
    then reported as not run, not fatal)."""
    session: list[Runner] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not session:
            session.append(Runner(load(model) if isinstance(model, Path) else model))
        return session[0].run(feeds)

    return run


def accuracy_table(
    items: list[Item],
    artifacts: list[tuple[str, RunFn] | Artifact],
    decoder_options: dict,
    output: str | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    images: str = "",
    preprocess: Preprocess | None = None,
) -> dict:
    """Run every artifact on every item; the first artifact is the reference the others are compared
    with. An artifact compiled for fixed shapes (a BModel) gets the images preprocessed to its shape
    (`preprocess` pinned to it: ratio kept, padded). An artifact that cannot run here is listed with
    the reason instead of numbers."""
    if not items:
        raise OcrgraftError("no images to evaluate")
    decoder = decoder_from(decoder_options)
    detector = isinstance(decoder, ProbMapDecoder)
    outputs: dict[str, list[np.ndarray]] = {}
    at_shape: dict[str, list[np.ndarray]] = {}  # the reference again, at a fixed artifact's shape
    against: dict[str, str] = {}  # a fixed-shape artifact -> its reference's label in at_shape
    skipped: dict[str, str] = {}
    ran: dict[str, str] = {}  # where an artifact's runs went, when it says
    artifacts = [
        Artifact(a[0], functools.partial(_one_by_one, *a)) if isinstance(a, tuple) else a for a in artifacts
    ]

    def run(artifact: Artifact, feeds: list[dict]) -> list[np.ndarray]:
        return [
            out[output] if output in out else next(iter(out.values())) for out in artifact.run_many(feeds)
        ]

    for artifact in artifacts:
        label = artifact.label
        try:
            feeds = [item.feeds for item in items]
            if artifact.shapes:
                if preprocess is None:
                    raise OcrgraftError(
                        f"it takes only {artifact.shapes}, and the images were not resized to it"
                    )
                fixed = preprocess.pinned(artifact.shapes[preprocess.input])
                feeds = [{preprocess.input: fixed(item.path)} for item in items]
                # The reference on the same resized input: masks compare only at one size, and a
                # recognizer's row of it shows what the fixed shape costs apart from the conversion.
                if detector or _resized(items, feeds):
                    at = "{} at {}x{}".format(artifacts[0].label, *fixed.opt_hw)
                    if at not in at_shape:
                        progress(f"accuracy: {at}: {len(items)} images")
                        at_shape[at] = run(artifacts[0], feeds)
                    against[label] = at
                    if not detector:
                        outputs.setdefault(at, at_shape[at])
            progress(f"accuracy: {label}: {len(items)} images")
            outputs[label] = run(artifact, feeds)
            if artifact.ran:
                ran[label] = artifact.ran
        except OcrgraftError as exc:
            skipped[label] = str(exc)
    if not outputs:
        raise OcrgraftError(f"no artifact could run on the images: {'; '.join(skipped.values())}")
    if detector:
        table = _detector(items, outputs, decoder, {k: at_shape[at] for k, at in against.items()})
    else:
        table = _recognizer(items, outputs, decoder, against)
    reference = next(iter(outputs))
    table.update(
        images=images,
        items=len(items),
        reference=reference,
        skipped=skipped,
        ran=ran,
        threshold=decoder.threshold if detector else None,
    )
    return table


def _one_by_one(label: str, run: RunFn, feeds: list[dict]) -> list[dict]:
    with steps(f"    {label}", len(feeds), "image") as bar:
        outputs = []
        for f in feeds:
            outputs.append(run(f))
            bar.advance()
        return outputs


def _resized(items: list[Item], feeds: list[dict]) -> bool:
    """Whether a fixed shape's preprocessing changed any image's input (padding or shrinking a line)."""
    return any(
        f[k].shape != v.shape or not np.array_equal(f[k], v)
        for item, f in zip(items, feeds)
        for k, v in item.feeds.items()
    )


def _recognizer(
    items: list[Item], outputs: dict[str, list[np.ndarray]], decoder, against: dict[str, str]
) -> dict:
    """Each artifact's reading against the labels, and how many images it reads differently from the
    first artifact (a fixed-shape artifact: from the first artifact run on the same resized images)."""
    labelled = all(item.label is not None for item in items)
    texts = {k: [decoder.decode(o)[0][0] for o in outs] for k, outs in outputs.items()}
    reference = next(iter(texts))
    rows = []
    for label, read in texts.items():
        row = {"artifact": label}
        if labelled:
            row.update(text_accuracy(read, [item.label for item in items]))
        ref = against.get(label, reference)
        row["differ"] = sum(normalize_text(a) != normalize_text(b) for a, b in zip(read, texts[ref]))
        if ref != reference:
            row["against"] = ref
        rows.append(row)
    per_image = [
        {"image": item.name, "label": item.label, **{k: texts[k][i] for k in texts}}
        for i, item in enumerate(items)
    ]
    return {"kind": "recognizer", "labelled": labelled, "rows": rows, "per_image": per_image}


def _detector(
    items: list[Item], outputs: dict[str, list[np.ndarray]], decoder: ProbMapDecoder, pinned: dict
) -> dict:
    """Masks against the first artifact's; an artifact of one fixed shape against the first artifact
    run on the same resized pages (`pinned`)."""
    reference = next(iter(outputs))
    rows, per_image, heat = [], [{"image": item.name} for item in items], None
    for label, outs in outputs.items():
        refs = pinned.get(label, outputs[reference])
        scores = [mask_iou(o, r, decoder.threshold) for o, r in zip(outs, refs)]
        for entry, (iou, flipped) in zip(per_image, scores):
            entry[label] = {"iou": iou, "flipped": flipped}
        worst = int(np.argmin([s[0] for s in scores]))
        if label != reference and (heat is None or scores[worst][0] < heat["iou"]):
            heat = {"image": items[worst].name, "artifact": label, "iou": scores[worst][0]}
            heat.update(reference_map=_plane(refs[worst]), artifact_map=_plane(outs[worst]))
        rows.append(
            {
                "artifact": label,
                "mean_iou": float(np.mean([s[0] for s in scores])),
                "min_iou": float(min(s[0] for s in scores)),
                "flipped": sum(s[1] for s in scores),
                "differ": sum(s[1] > 0 for s in scores),
            }
        )
    table = {"kind": "detector", "rows": rows, "per_image": per_image}
    if heat:  # arrays for the heatmap picture, popped before the report is written
        table["maps"] = heat
    return table


def _plane(prob_map: np.ndarray) -> np.ndarray:
    """The first item's first channel: the text probability map as a picture."""
    plane = np.asarray(prob_map, np.float32)
    while plane.ndim > 2:
        plane = plane[0]
    return plane


def accuracy_summary(table: dict) -> str:
    """One line for the console and the report's head."""
    ref = table["reference"]
    if table["kind"] == "recognizer" and table["labelled"]:
        parts = [
            f"{r['artifact']} {r['word_accuracy']:.1%} (CER {r['cer']:.3f}, {r['differ']} differ{_vs(r)})"
            for r in table["rows"]
        ]
    elif table["kind"] == "recognizer":
        parts = [f"{r['artifact']}: {r['differ']} read differently{_vs(r)}" for r in table["rows"][1:]]
    else:
        parts = [
            f"{r['artifact']} mean IoU {r['mean_iou']:.4f} ({r['flipped']} pixels flipped)"
            for r in table["rows"][1:]
        ]
    what = "word accuracy" if table["kind"] == "recognizer" and table["labelled"] else f"against {ref}"
    return f"{table['items']} real images, {what}: " + "; ".join(parts)


def accuracy_markdown(table: dict) -> list[str]:
    ref = table["reference"]
    where = f" from `{table['images']}`" if table.get("images") else ""
    lines = ["", "## Accuracy on real images", "", f"{table['items']} images{where}. " + _how(table), ""]
    if table["kind"] == "recognizer":
        head = "| artifact | word accuracy | CER | " if table["labelled"] else "| artifact | "
        lines += [head + f"read differently from {ref} |", "|---" * (head.count("|")) + "|"]
        for r in table["rows"]:
            cells = ""
            if table["labelled"]:
                cells = f"{r['word_accuracy']:.2%} ({r['correct']}/{r['items']}) | {r['cer']:.4f} | "
            lines.append(f"| {r['artifact']} | {cells}{r['differ']}{_vs(r)} |")
    else:
        lines += [
            f"| artifact | mean mask IoU vs {ref} | min IoU | pixels flipped (threshold "
            f"{table['threshold']:g}) | images differing |",
            "|---|---|---|---|---|",
        ]
        for r in table["rows"]:
            iou = f"{r['mean_iou']:.4f} | {r['min_iou']:.4f}"
            lines.append(f"| {r['artifact']} | {iou} | {r['flipped']} | {r['differ']} |")
    for label, why in table["skipped"].items():
        lines.append(f"\n{label}: not run here ({why}).")
    for label, where in table.get("ran", {}).items():
        lines.append(f"\n{label} ran as {where}.")
    if table["kind"] == "recognizer":
        sources = [r["artifact"] for r in table["rows"]]
        lines += ["", "| image | label | " + " | ".join(sources) + " |", "|---" * (len(sources) + 2) + "|"]
        for row in table["per_image"][:ROWS_SHOWN]:
            cells = " | ".join(f"`{row[k]}`" for k in sources)
            label = "" if row["label"] is None else f"`{row['label']}`"
            lines.append(f"| {row['image']} | {label} | {cells} |")
        if len(table["per_image"]) > ROWS_SHOWN:
            lines.append(f"\n(first {ROWS_SHOWN} of {len(table['per_image'])} images; report.json has all)")
    return lines


def _vs(row: dict) -> str:
    return f" (from {row['against']})" if row.get("against") else ""


def _how(table: dict) -> str:
    if table["kind"] == "recognizer":
        how = (
            "Texts are compared with spaces ignored (PaddleOCR's default); CER is edit distance over label "
            "characters."
            if table["labelled"]
            else "No labels: each artifact is compared with the first."
        )
        if any(r.get("against") for r in table["rows"]):
            how += (
                " An artifact compiled at one shape reads the images resized to it and is compared with the "
                "first artifact on the same resized images (a row of its own), so that what the fixed shape "
                "costs and what the conversion costs show apart."
            )
        return how
    return (
        "Masks are the probability map above the threshold; IoU and flips are against the first artifact "
        "(for an artifact compiled at one shape, against the first artifact on the same pages resized to it)."
    )


def evaluate_folder(
    out_dir: str | Path,
    images: str | Path,
    labels: str | Path | None = "auto",
    limit: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[dict, str]:
    """`ocrgraft eval`: the accuracy table of a finished conversion's artifacts that run here, on new
    images read with the recipe the conversion saved; written into its report.json and report.md."""
    from ocrgraft.converter.report import write_report

    out = Path(out_dir)
    report, recipe, preprocess = _saved_conversion(out)
    first = sorted((out / "stages").glob("00_*.onnx"))
    framework = report.get("source", {}).get("framework", "onnx")
    saved = [("source ONNX" if framework == "onnx" else "raw ONNX", first[0])] if first else []
    saved.append(("final ONNX", out / str(report.get("final_model", "model.onnx"))))
    artifacts = []
    for label, path in saved:  # loaded now: a damaged file is an error, not a row quietly left out
        try:
            artifacts.append((label, onnx_runner(load(path))))
        except OcrgraftError as exc:
            raise OcrgraftError(f"cannot evaluate the {label} model: {exc}; convert again") from None
    artifacts += get_target(report["target"]).artifacts(out)
    items = load_items(images, preprocess, labels, limit)
    progress(f"images: {len(items)} from {images} ({preprocess.describe()})")
    table = accuracy_table(
        items,
        artifacts,
        recipe["decoder"],
        recipe["decoder"].get("output"),
        progress,
        str(images),
        preprocess,
    )
    for label, path in saved:  # ONNX Runtime could not run it: the conversion's own output is broken
        if label in table["skipped"]:
            raise OcrgraftError(f"{path}: {table['skipped'][label]}; convert again")
    from ocrgraft.converter.pictures import draw

    maps = table.pop("maps", None)
    report["accuracy"] = table
    report["pictures"] = draw(report, out, {item.name: item.path for item in items}, maps)
    write_report(report, out)
    return table, f"accuracy: {accuracy_summary(table)}; wrote {out}/report.md"


def _saved_conversion(out: Path) -> tuple[dict, dict, Preprocess]:
    """The report and recipe a conversion saved, and the preprocessing they give, checked before any
    image is read: a damaged file is named in one line, not found out by a KeyError half-way."""
    from ocrgraft.converter.report import render_markdown

    try:
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        recipe = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OcrgraftError(
            f"{out}: not a conversion's output folder with report.json and recipe.json ({exc})"
        ) from None
    try:
        if not isinstance(report, dict):
            raise TypeError("not a JSON object")
        get_target(report["target"])
        render_markdown(report)  # reads every field the report is written again with
    except (OcrgraftError, KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise _damaged(out / "report.json", "a conversion report", exc) from None
    if isinstance(recipe, dict) and not recipe.get("decoder"):
        raise OcrgraftError(f"{out}: its recipe has no [decoder], so outputs cannot be read as text or masks")
    try:
        if not isinstance(recipe, dict):
            raise TypeError("not a JSON object")
        decoder_from(recipe["decoder"])
        recipe["decoder"].get("output")
        preprocess = Preprocess.from_recipe(recipe.get("preprocess"), recipe["shapes"])
    except (OcrgraftError, KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise _damaged(out / "recipe.json", "a conversion's recipe", exc) from None
    return report, recipe, preprocess


def _damaged(path: Path, what: str, exc: Exception) -> OcrgraftError:
    reason = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]
    return OcrgraftError(f"{path} is not {what} ({reason}); convert again")
