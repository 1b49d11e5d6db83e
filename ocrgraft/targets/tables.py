"""Versioned op-support tables shipped as data (tables/<toolchain>-<version>.tsv), each citing its source."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ocrgraft.core.errors import OcrgraftError


@dataclass
class OpTable:
    toolchain: str
    version: str
    source: str  # where the facts come from
    ops: dict[str, str]  # supported op -> its documented restrictions ("" if none)
    unsupported: set[str]  # ops the table lists as not supported
    opsets: tuple[int, int] | None  # documented opset range, if the source states one

    @property
    def title(self) -> str:
        return f"{self.toolchain} {self.version} op table"


def table_versions(toolchain: str) -> tuple[str, ...]:
    """The toolchain versions an op table ships for, e.g. ('10.1', '8.6') for tensorrt."""
    return tuple(
        sorted(
            p.name[len(toolchain) + 1 : -4]
            for p in (resources.files("ocrgraft.targets") / "tables").iterdir()
            if p.name.startswith(toolchain + "-") and p.name.endswith(".tsv")
        )
    )


def load_table(toolchain: str, version: str) -> OpTable:
    name = f"{toolchain}-{version}.tsv"
    path = resources.files("ocrgraft.targets") / "tables" / name
    if not path.is_file():
        known = table_versions(toolchain)
        raise OcrgraftError(f"no {toolchain} op table for version '{version}' (known: {', '.join(known)})")
    source, opsets, ops, unsupported = "", None, {}, set()
    for line in path.read_text().splitlines():
        if line.startswith("# opsets\t"):
            lo, hi = line.split("\t")[1].split("-")
            opsets = (int(lo), int(hi))
        elif line.startswith("# ") and not source:
            source = line[2:]
        elif line and not line.startswith("#"):
            op, supported, *rest = line.split("\t")
            if supported == "Y":
                ops[op] = rest[0] if rest else ""
            else:
                unsupported.add(op)
    return OpTable(toolchain, version, source, ops, unsupported, opsets)


def check_against_table(model, table: OpTable, checks: dict | None = None):
    """Every node's op must be in the table, the opset in its range, and each op-specific check must
    pass (a check returns a reason string when the node breaks a documented restriction)."""
    import onnx_ir as ir

    from ocrgraft.targets.base import SupportCheck

    result = SupportCheck(table=table.source)
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if table.opsets and opset is not None and not table.opsets[0] <= opset <= table.opsets[1]:
        result.unsupported.append(
            f"opset {opset}: {table.toolchain} {table.version} takes opsets "
            f"{table.opsets[0]}-{table.opsets[1]} (add convert-opset)"
        )
    missing: dict[str, int] = {}
    broken: dict[str, str] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        if op not in table.ops:
            missing[op] = missing.get(op, 0) + 1
            continue
        reason = (checks or {}).get(op, lambda n: None)(node)
        if reason and op not in broken:
            broken[op] = reason
        if table.ops[op] and f"{op}: {table.ops[op]}" not in result.notes:
            result.notes.append(f"{op}: {table.ops[op]}")
    for op, n in sorted(missing.items()):
        why = "listed as unsupported" if op in table.unsupported else "not in the table"
        result.unsupported.append(f"{op} ({n} node{'s' * (n > 1)}): {why}")
    result.unsupported += [f"{op}: {reason}" for op, reason in sorted(broken.items())]
    return result


def is_constant(value) -> bool:
    """An initializer or a Constant node's output: what 'must be an initializer' restrictions accept."""
    return (
        value is None
        or value.const_value is not None
        or (value.producer() is not None and value.producer().op_type == "Constant")
    )
