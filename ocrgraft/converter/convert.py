"""convert: source -> ONNX -> passes -> target, every stage saved and verified, in one short function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ocrgraft.converter.modelio import atomic_dir, save
from ocrgraft.converter.pipeline import Pipeline, PipelineResult
from ocrgraft.converter.recipes import Recipe, get_recipe
from ocrgraft.converter.report import build_report, write_report
from ocrgraft.converter.shapes import ShapeSet
from ocrgraft.converter.verify import FP32, Tolerance
from ocrgraft.errors import OcrgraftError
from ocrgraft.frontends import Source
from ocrgraft.passes import GENERIC_PASSES
from ocrgraft.targets import BuildContext, get_target


@dataclass
class Conversion:
    out_dir: Path
    report: dict
    result: PipelineResult


def load_source(recipe: Recipe) -> Source:
    if recipe.frontend == "onnx":
        from ocrgraft.frontends.onnx import load_source as load_onnx
        return load_onnx(recipe.source_path(), name=recipe.name)
    raise OcrgraftError(f"model '{recipe.name}': frontend '{recipe.frontend}' is not available")


def default_passes(recipe: Recipe, target_name: str) -> list[str]:
    """Generic clean-ups, then what the target needs, then the recipe's own extras for it."""
    target = get_target(target_name)
    return list(GENERIC_PASSES) + list(target.passes) + recipe.extra_passes(target_name)


def convert(model: str | None = None, *, onnx: str | Path | None = None, target: str = "ort", out: str | Path = "out",
            passes: str | list | None = None, shapes=None, tolerance: Tolerance = FP32,
            target_options: dict[str, str] | None = None, progress: Callable[[str], None] = print) -> Conversion:
    if (model is None) == (onnx is None):
        raise OcrgraftError("give a zoo model name or --onnx FILE (one of them)")
    recipe = get_recipe(model) if model else Recipe(name=Path(onnx).stem, source=str(onnx))
    tgt = get_target(target)
    source = load_source(recipe)
    shape_set = ShapeSet.parse(shapes) if shapes else recipe.shapes
    pass_list = passes if passes is not None else default_passes(recipe, tgt.name)
    dest = Path(out) / f"{recipe.name}-{tgt.name}"
    for note in source.notes:
        progress(f"note: {note}")
    with atomic_dir(dest) as tmp:
        pipeline = Pipeline(pass_list, tolerance=tolerance, stages_dir=tmp / "stages", progress=progress)
        result = pipeline.run(source.model, shape_set, source=source.reference, source_name=source.framework)
        final = save(result.model, tmp / "model.onnx")
        support = tgt.check_support(result.model)
        if not support.ok:
            raise OcrgraftError(f"target {tgt.name} ({support.table}) does not support: {'; '.join(support.unsupported)}")
        progress(f"target {tgt.name}: support check passed ({support.table}); building")
        build = tgt.build(BuildContext(final, tmp, result, recipe, dict(target_options or {})))
        progress(f"target {tgt.name}: {build.summary}")
        report = build_report(model=recipe.name, target=tgt.name, source=source,
                              shapes=result.shapes, result=result, support=support, build=build,
                              passes=[p.label for p in pipeline.passes], out_dir=dest)
        write_report(report, tmp)
    return Conversion(dest, report, result)

