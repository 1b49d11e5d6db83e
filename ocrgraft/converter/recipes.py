"""The zoo's recipes: one small TOML file per model in ocrgraft/recipes/<name>.toml."""

from __future__ import annotations

from importlib import resources

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.recipe import Recipe


def _recipe_files() -> dict[str, object]:
    return {f.name[:-5]: f for f in resources.files("ocrgraft.recipes").iterdir() if f.name.endswith(".toml")}


def list_recipes() -> list[Recipe]:
    return [get_recipe(n) for n in sorted(_recipe_files())]


def get_recipe(name: str) -> Recipe:
    files = _recipe_files()
    if name not in files:
        raise OcrgraftError(
            f"unknown model '{name}' (known: {', '.join(sorted(files)) or 'none'}; "
            "or convert any file with --onnx FILE)"
        )
    return Recipe.from_toml(name, files[name].read_text(), f"ocrgraft/recipes/{name}.toml")
