"""The pass contract: a named, documented, idempotent in-place rewrite that counts what it did.

Passes build on onnx_ir's pass infrastructure, so they also run inside `onnx_ir.passes.PassManager`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
from collections import Counter
from typing import ClassVar

import onnx
import onnx_ir as ir

from ocrgraft.core.compare import Tolerance
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.graph import all_nodes
from ocrgraft.passes._edit import ensure_shapes

# The libraries passes build on log every rewrite at INFO; frameworks (Paddle) that configure the root
# logger would print them all. ocrgraft reports rewrites itself.
for _name in ("onnx_ir", "onnxscript"):
    logging.getLogger(_name).setLevel(logging.WARNING)

EXACT = "exact"  # preserves semantics: every stage is checked in ONNX Runtime
LEGALIZE = "legalize"  # a form only some vendor compiler wants; may not run in ONNX Runtime
CHANGES = "changes"  # opt-in, changes the numbers on purpose; reported, never claimed equal
SEMANTICS = (EXACT, LEGALIZE, CHANGES)


@dataclasses.dataclass
class PassResult(ir.passes.PassResult):
    """What a pass did: `modified` (anything changed), `rewrites` (how many rewrites) and `ops` (the op
    types left and their counts, for reports: the pass has walked the graph anyway)."""

    rewrites: int = 0
    ops: Counter | None = None


class Pass(ir.passes.InPlacePass):
    """Base class. Subclasses set `name`, a docstring whose first line says what and why, and
    implement `rewrite(model) -> int` (the number of rewrites; 0 means nothing changed)."""

    name: ClassVar[str] = ""
    semantics: ClassVar[str] = EXACT
    usage: ClassVar[str] = ""  # arguments in words, for passes whose keys are their own (rename-dims)
    tolerance: ClassVar[Tolerance | None] = None  # overrides the run's tolerance for this pass
    uses_samples: ClassVar[bool] = (
        False  # measures the model: the Pipeline sets `self.samples` to the stage's inputs
    )
    samples: list[dict] | None = None  # ... a list of {input name: array}, for that run only
    needs_shapes: ClassVar[bool] = False  # reads value shapes: `requires` infers them afresh first
    refresh_shapes: ClassVar[bool] = False  # ... and infers them again after a rewrite, for what follows
    explain: bool = False  # asked to say why it did not fire where a pattern began to match
    misses: list[str] = []  # ... one line per such place, filled by the last run

    @classmethod
    def doc(cls) -> str:
        return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")

    @property
    def label(self) -> str:
        """Name plus arguments, as written on the command line."""
        args = self.args()
        return self.name + (f"({','.join(f'{k}={v}' for k, v in args.items())})" if args else "")

    def args(self) -> dict[str, str]:
        return {}

    @classmethod
    def parameters(cls) -> dict[str, str | None]:
        """The arguments `name(key=value)` takes and their defaults (None: required); keyword-only ones
        are for Python callers (to-fp16's samples), not the pass list."""
        if cls.__init__ is Pass.__init__ or cls.__init__ is object.__init__:
            return {}
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return {
            p.name: None if p.default is inspect.Parameter.empty else str(p.default)
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)
        }

    @classmethod
    def describe_parameters(cls) -> str:
        """For `ocrgraft passes` and errors: 'max_kernel=255', or the pass's own `usage`."""
        text = ", ".join(
            k if v is None else f"{k}={v!r}" if v == "" else f"{k}={v}" for k, v in cls.parameters().items()
        )
        return text or cls.usage

    def rewrite(self, model: ir.Model) -> int:
        raise NotImplementedError

    def applies(self, model: ir.Model) -> bool:
        """A cheap look for anything the pass could rewrite; False skips it, shape inference included."""
        return True

    def requires(self, model: ir.Model) -> None:
        """The precondition: fresh shapes for a pass that reads them (put back if nothing is rewritten,
        so that a pass that changes nothing leaves the model exactly as it was)."""
        self._applies = self.applies(model)
        self._restore = ensure_shapes(model) if self.needs_shapes and self._applies else None

    def call(self, model: ir.Model) -> PassResult:
        self.misses = []
        if not getattr(self, "_applies", True):
            return PassResult(model, modified=False, rewrites=0)
        before = all_nodes(model)  # held, so a new node cannot reuse a removed one's id
        count = int(self.rewrite(model))
        restore, self._restore = getattr(self, "_restore", None), None
        if not count:  # nothing changed: no walk afterwards (ops=None: the caller's count holds)
            if restore is not None:
                restore()
            return PassResult(model, modified=False, rewrites=0)
        if self.refresh_shapes:
            ensure_shapes(model)
        after = all_nodes(model)
        made = set(map(id, after)).difference(map(id, before))
        new = [n for n in after if id(n) in made] if made else []
        if new:  # so Netron shows which pass made each node (a pass that rebuilds the graph keeps the names)
            names = {n.name for n in before if n.name}
            for node in new:
                if not (node.name and node.name in names):
                    node.doc_string = node.doc_string or f"ocrgraft:{self.name}"
                    if not node.name:
                        node.name = f"{self.name}/{node.op_type}_{len(before)}_{id(node) % 100000}"
        return PassResult(model, modified=count > 0, rewrites=count, ops=Counter(n.op_type for n in after))

    def __call__(self, model, /) -> PassResult:
        """Run on an onnx_ir model in place; an onnx.ModelProto or a path is loaded first."""
        from ocrgraft.core.modelio import to_ir

        if isinstance(model, (onnx.ModelProto, str)) or hasattr(model, "__fspath__"):
            model = to_ir(model)
        return super().__call__(model)

    def __repr__(self) -> str:
        return f"<pass {self.label}>"


_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by name to recipes, the CLI and `get_pass`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.semantics not in SEMANTICS:
        raise ValueError(f"{cls.__name__}.semantics must be one of {SEMANTICS}")
    _REGISTRY[cls.name] = cls
    return cls


def list_passes() -> list[type[Pass]]:
    """Registered passes, sorted by name. Which targets run which is declared by each target."""
    return [c for _, c in sorted(_REGISTRY.items())]


def get_pass(spec: str | Pass | type[Pass]) -> Pass:
    """A pass instance from a name, `name(key=value,...)`, a class or an instance."""
    if isinstance(spec, Pass):
        return spec
    if isinstance(spec, type) and issubclass(spec, Pass):
        return spec()
    name, args = _parse_spec(spec)
    cls = _REGISTRY.get(name)
    if cls is None:
        near = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(sorted(_REGISTRY))})"
        raise OcrgraftError(f"unknown pass '{name}'{hint}")
    known = cls.parameters()
    unknown = [] if cls.usage else sorted(set(args) - set(known))  # rename-dims(x.0=...): its own keys
    if unknown:
        takes = cls.describe_parameters()
        raise OcrgraftError(
            f"pass '{name}' has no argument {', '.join(unknown)}; "
            + (f"it takes {takes}" if known else "it takes no arguments")
        )
    try:
        return cls(**args)
    except TypeError as exc:
        raise OcrgraftError(f"pass '{name}' cannot take arguments {args or '(none given)'}: {exc}") from None


def parse_pass_list(text: str | list) -> list[Pass]:
    """'a,b(k=v,k2=v2),c' -> passes; commas inside parentheses belong to the arguments."""
    if not isinstance(text, str):
        return [get_pass(p) for p in text]
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [get_pass(p.strip()) for p in items if p.strip()]


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    spec = spec.strip()
    if "(" not in spec:
        return spec, {}
    if not spec.endswith(")"):
        raise OcrgraftError(f"bad pass '{spec}': expected name(key=value,...)")
    name, inner = spec[:-1].split("(", 1)
    args = {}
    for item in filter(None, (s.strip() for s in inner.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise OcrgraftError(f"bad argument '{item}' for pass '{name}': expected key=value")
        args[key.strip()] = value.strip()
    return name.strip(), args
