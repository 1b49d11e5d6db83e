"""convert: source -> ONNX -> passes -> target, every stage saved and verified, in one short function."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocrgraft.converter.accuracy import accuracy_summary, accuracy_table, onnx_runner
from ocrgraft.converter.parity import parity_table
from ocrgraft.converter.pictures import draw as draw_pictures
from ocrgraft.converter.pipeline import FLOOR_MULTIPLE, Pipeline, PipelineResult
from ocrgraft.converter.recipes import get_recipe
from ocrgraft.converter.report import build_report, write_recipe, write_report
from ocrgraft.core.compare import FP32, Tolerance
from ocrgraft.core.decode import resolve_charset
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.graph import opset_of
from ocrgraft.core.images import Preprocess, list_images, load_items
from ocrgraft.core.modelio import (
    atomic_dir,
    check_replaceable,
    external_data_files,
    refuse_overwrite,
    save,
    to_bytes,
)
from ocrgraft.core.recipe import Recipe, read_recipe_file
from ocrgraft.core.shapes import ShapeSet
from ocrgraft.frontends import NEEDS, Source, require
from ocrgraft.passes import CLEANUP_PASSES
from ocrgraft.passes.convert_opset import missing_ops
from ocrgraft.targets import BuildContext, Target, get_target, target_class


@dataclass
class Conversion:
    out_dir: Path
    report: dict
    result: PipelineResult


def load_source(
    recipe: Recipe,
    *,
    target: str = "ort",
    weights=None,
    exporter: str | None = None,
    shapes: ShapeSet | None = None,
    trust_code: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Source:
    if recipe.frontend == "onnx" and weights or recipe.frontend != "torch" and exporter:
        raise OcrgraftError(
            f"--weights and --exporter apply to PyTorch models; '{recipe.name}' is {recipe.frontend}"
        )
    if recipe.frontend == "onnx":
        from ocrgraft.frontends.onnx import load_source as load_onnx

        return load_onnx(recipe.source_path(), name=recipe.name)
    if recipe.frontend == "torch":
        from ocrgraft.frontends.torch import load_source as load_torch

        return load_torch(
            recipe,
            target=target,
            weights=weights,
            exporter=exporter,
            shapes=shapes,
            trust_code=trust_code,
            progress=progress,
        )
    if recipe.frontend == "paddle":
        from ocrgraft.frontends.paddle import load_recipe_source

        return load_recipe_source(recipe, weights)
    raise OcrgraftError(f"model '{recipe.name}': frontend '{recipe.frontend}' is not available")


def check_output_folder(out: Path, dest: Path, force: bool, inputs: list) -> None:
    """Before any work: the output root must be a folder (or creatable), and no input may lie in the
    folder this run replaces."""
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise OcrgraftError(f"--out {out}: {p} is a file, not a folder; choose another --out")
            break
    refuse_overwrite(inputs, folders=[dest])
    check_replaceable(dest, force)


def keep_failure(exc: VerificationError, tmp: Path, dest: Path, passes: list[str]) -> Path:
    """`<dest>.failed/`: the stages so far, the pair that differs (pair/before.onnx, the last checked
    stage; pair/after.onnx, the failing one) and failure.md naming the pass, the node and what to try."""
    failed = dest.parent / f"{dest.name}.failed"
    shutil.rmtree(failed, ignore_errors=True)
    shutil.copytree(tmp, failed)
    before, after = exc.pair
    (failed / "pair").mkdir(exist_ok=True)
    for name, data in (("before.onnx", before), ("after.onnx", after)):
        if data is not None:
            (failed / "pair" / name).write_bytes(data)
    stage, where = exc.stage, exc.divergence
    others = ",".join(p for p in passes if p != stage.name)
    lines = [
        f"# Stage {stage.index:02d} '{stage.name}' changed the outputs",
        "",
        str(exc),
        "",
        "- the pair: `pair/before.onnx` (the last checked stage) and `pair/after.onnx` (this stage); "
        "`stages/` holds every stage written so far",
    ]
    if where:
        lines.append(
            f"- first diverging tensor: `{where.tensor}` from node `{where.node}` ({where.op}; inputs "
            f"{', '.join(where.inputs)}); everything before it in the graph agrees"
        )
    lines += [
        "",
        "What to try:",
        "",
        f"- see what the pass rewrote: `ocrgraft apply pair/before.onnx /tmp/check.onnx -p {stage.name} "
        "--explain --shapes ...`, and open both files in Netron (`ocrgraft view`)",
        "- if the difference is round-off, a looser tolerance: `--atol` (this stage was checked at "
        f"{stage.tolerance or 'the default'})",
        f"- convert without the pass: `--passes {others}`",
    ]
    (failed / "failure.md").write_text("\n".join(lines) + "\n")
    return failed


def default_passes(recipe: Recipe, target: Target, model) -> list[str]:
    """Generic clean-ups, an opset conversion if the model is newer than the target reads (and every op
    it uses exists at the older opset; else the support check names them), then what the target needs,
    then the recipe's own extras, then fresh shapes."""
    newest = target.max_opset()
    lower = []
    if newest and opset_of(model) > newest and not missing_ops(model, newest):
        lower = [f"convert-opset(opset={newest})"]
    return [*CLEANUP_PASSES, *lower, *target.passes, *recipe.extra_passes(target.name), "infer-shapes"]


def convert(
    model: str | None = None,
    *,
    onnx: str | Path | None = None,
    paddle: str | Path | None = None,
    target: str = "ort",
    out: str | Path = "out",
    passes: str | list | None = None,
    shapes=None,
    tolerance: Tolerance = FP32,
    target_options: dict[str, str] | None = None,
    weights: str | Path | None = None,
    exporter: str | None = None,
    progress: Callable[[str], None] = print,
    force: bool = False,
    trust_code: bool = False,
    inputs: dict | None = None,
    explain: bool | str = False,
    recipe_file: str | Path | None = None,
    images: str | Path | None = None,
    labels: str | Path | None = "auto",
    limit: int | None = None,
    dictionary: str | Path | None = None,
    dict_space: bool | None = None,
    noise_floor: bool = True,
    name: str | None = None,
) -> Conversion:
    for flag, path in (("--onnx", onnx), ("--paddle", paddle), ("--out", out), ("--weights", weights)):
        if path is not None and not str(path).strip():
            raise OcrgraftError(f"{flag} is an empty path")
    if sum(x is not None for x in (model, onnx, paddle)) != 1:
        raise OcrgraftError("give one of: a zoo model name, --onnx FILE, --paddle DIR")
    if model:
        recipe = get_recipe(model)
    elif onnx:
        recipe = Recipe(name=Path(onnx).stem, source=str(onnx))
    else:
        recipe = Recipe(name=Path(paddle).resolve().name, frontend="paddle", source=str(paddle))
    if recipe_file:
        recipe = recipe.merged(read_recipe_file(recipe_file))
    if name is not None:
        if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
            raise OcrgraftError(f"--name '{name}': give a plain folder name (no '/', not starting with '.')")
        recipe.name = name
    if dictionary or dict_space is not None:
        decoder = dict(recipe.options.get("decoder") or {"kind": "ctc"})
        decoder.update({"dict": str(dictionary)} if dictionary else {})
        decoder.update({"space": dict_space} if dict_space is not None else {})
        decoder.pop("charset", None) if dictionary else None
        if dictionary:
            resolve_charset(decoder)  # a missing, empty or unreadable dictionary is said before any work
        recipe.options["decoder"] = decoder
    target_options = target_class(target).check_options(dict(target_options or {}))  # before any work
    tgt = get_target(target, target_options.get("version"))
    if (
        tolerance == FP32 and "verify" in recipe.options
    ):  # the recipe's stated tolerance, unless one was given
        tolerance = Tolerance(**recipe.options["verify"])
    override = ShapeSet.parse(shapes) if shapes else None
    shape_set = override or recipe.shapes
    dest = Path(out) / f"{recipe.name}-{tgt.name}"
    check_output_folder(
        Path(out),
        dest,
        force,
        [onnx, *external_data_files(onnx), paddle, weights, target_options.get("calib"), images, recipe_file],
    )
    if images:
        list_images(images, labels, limit)  # a missing folder or label file is said before the export
    if recipe.frontend in NEEDS:  # the framework a model needs, before anything else is said
        require(recipe.frontend, f"model '{recipe.name}' ({recipe.frontend})")
    source = load_source(
        recipe,
        target=tgt.name,
        weights=weights,
        exporter=exporter,
        shapes=override,
        trust_code=trust_code,
        progress=progress,
    )
    if recipe.options.get("decoder"):
        metadata = dict(source.model.metadata_props)
        recipe.options["decoder"] = resolve_charset(recipe.options["decoder"], metadata)
    items = []
    if images:
        if not recipe.options.get("decoder"):
            raise OcrgraftError(
                "--images needs a decoder to read the outputs: a recipe with [decoder] (--recipe FILE), "
                "or --dict FILE for a CTC recognizer"
            )
        ranges = shape_set.resolve(list(source.model.graph.inputs))
        preprocess = Preprocess.from_recipe(recipe.options.get("preprocess"), ranges.shapes)
        items = load_items(images, preprocess, labels, limit)
        progress(f"images: {len(items)} from {images} ({preprocess.describe()})")
    raw = to_bytes(source.model) if recipe.options.get("decoder") else None  # the exported model, for parity
    pass_list = passes if passes is not None else default_passes(recipe, tgt, source.model)
    if isinstance(passes, str) and passes.startswith(
        "+"
    ):  # the default pipeline plus these, before infer-shapes
        *defaults, last = default_passes(recipe, tgt, source.model)
        pass_list = ",".join([*defaults, passes[1:], last])
    for note in source.notes:
        progress(f"note: {note}")
    with atomic_dir(dest, force=force) as tmp:
        pipeline = Pipeline(
            pass_list,
            tolerance=tolerance,
            stages_dir=tmp / "stages",
            progress=progress,
            inputs=inputs,
            explain=explain,
            images=[(item.name, item.feeds) for item in items],
            floor_multiple=FLOOR_MULTIPLE if noise_floor else None,
        )
        try:
            result = pipeline.run(
                source.model, shape_set, source=source.reference, source_name=source.framework
            )
        except VerificationError as exc:
            if getattr(exc, "stage", None) is None:
                raise
            failed = keep_failure(exc, tmp, dest, [p.label for p in pipeline.passes])
            raise VerificationError(
                f"{exc} (stages so far, the failing pair and what to try: {failed}/)"
            ) from exc
        final = save(result.model, tmp / "model.onnx")
        parity = parity_table(recipe.options.get("decoder"), raw, result, source.framework) if raw else None
        if parity:
            progress(f"parity: {parity['summary']}")
        support = tgt.check_support(result.model)
        if not support.ok:
            raise OcrgraftError(
                f"target {tgt.name} ({support.table}) does not support: {'; '.join(support.unsupported)}"
            )
        progress(f"target {tgt.name}: support check passed ({support.table}); building")
        ctx = BuildContext(
            final,
            tmp,
            recipe.name,
            result.shapes,
            result.cases,
            result.tolerance,
            recipe.options,
            target_options,
            [item.path for item in items if item.path is not None],
        )
        build = tgt.build(ctx)
        build.next_steps = tgt.next_steps(ctx, build)
        progress(f"target {tgt.name}: {build.summary}")
        if build.precision:
            progress(f"precision: the device computes in {build.precision['device']}")
        accuracy = None
        if items:
            artifacts = [
                (source.framework, source.reference)
                if source.reference
                else ("source ONNX", onnx_runner(raw)),
                *([("raw ONNX", onnx_runner(raw))] if source.reference else []),
                ("final ONNX", onnx_runner(result.model)),
                *tgt.artifacts(tmp),  # what the target built that runs here (a BModel on the simulator)
            ]
            accuracy = accuracy_table(
                items,
                artifacts,
                recipe.options["decoder"],
                recipe.options["decoder"].get("output"),
                progress,
                str(images),
                preprocess,
            )
            progress(f"accuracy: {accuracy_summary(accuracy)}")
        maps = accuracy.pop("maps", None) if accuracy else None  # a detector's worst page, for a picture
        report = build_report(
            model=recipe.name,
            target=tgt.name,
            source=source,
            shapes=result.shapes,
            result=result,
            support=support,
            build=build,
            passes=[p.label for p in pipeline.passes],
            out_dir=dest,
            parity=parity,
            accuracy=accuracy,
        )
        report["pictures"] = draw_pictures(report, tmp, {item.name: item.path for item in items}, maps)
        write_report(report, tmp)
        write_recipe(recipe, result.shapes, tmp)
    return Conversion(dest, report, result)
