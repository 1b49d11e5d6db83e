"""Pictures beside report.md (matplotlib, `ocrgraft[report]`): how far each stage moved the outputs
against the tolerance, how the graph shrank stage by stage, and, with real images, the text lines each
artifact read, or for a detector the probability maps of its worst page and where they differ. Without
matplotlib the report says how to get them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

ERRORS = "stage_errors.png"
NODES = "stage_nodes.png"
READINGS = "readings.png"
HEATMAP = "prob_map_difference.png"


def draw(
    report: dict, out_dir: Path, images: dict[str, Path] | None = None, maps: dict | None = None
) -> list[str]:
    """Write the pictures the report has data for; their file names (none without matplotlib).
    `maps`: a detector's worst page (accuracy table), its reference and artifact probability maps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    with warnings.catch_warnings():
        # Labels in scripts DejaVu Sans lacks (lprnet's Chinese provinces) are drawn as boxes; saying so
        # on stderr for every picture is noise.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        return _draw(plt, report, out_dir, images, maps)


def _text(value) -> str:
    """Text matplotlib can draw: a name taken from a non-UTF-8 file name holds surrogate escapes, which
    it refuses; they are shown as backslash escapes instead."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _draw(plt, report: dict, out_dir: Path, images: dict[str, Path] | None, maps: dict | None) -> list[str]:
    made = []
    stages = report["stages"]
    names = [_text(f"{s['index']:02d} {s['name']}") for s in stages]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for key, label in (("max_abs", "vs the source"), ("max_abs_prev", "vs the previous stage")):
        points = [(i, s.get(key)) for i, s in enumerate(stages) if s.get(key) is not None]
        if points:
            ax.plot(*zip(*[(i, max(v, 1e-12)) for i, v in points]), "o-", label=label)
    ax.axhline(
        report["tolerance"]["atol"], color="red", linestyle="--", label="atol the stages were checked at"
    )
    ax.set_yscale("log")
    ax.set_ylabel("max abs error (0 drawn at 1e-12)")
    ax.set_xticks(range(len(stages)), names, rotation=40, ha="right", fontsize=7)
    ax.set_title(_text(f"{report['model']} -> {report['target']}: how far each stage moved the outputs"))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / ERRORS, dpi=110)
    plt.close(fig)
    made.append(ERRORS)

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(range(len(stages)), [s["nodes"] for s in stages], color="#4a7ab8")
    for i, s in enumerate(stages):
        if s["op_delta"]:
            top = sorted(s["op_delta"].items(), key=lambda kv: kv[1])[:2]
            ax.annotate(", ".join(f"{op} {n:+d}" for op, n in top), (i, s["nodes"]), fontsize=6, ha="center")
    ax.set_xticks(range(len(stages)), names, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("nodes")
    ax.set_title("nodes after each stage (largest op-type changes noted)")
    fig.tight_layout()
    fig.savefig(out_dir / NODES, dpi=110)
    plt.close(fig)
    made.append(NODES)

    table = report.get("accuracy")
    if table and table.get("kind") == "recognizer" and images:
        rows = [r for r in table["per_image"] if r["image"] in images][:8]
        artifacts = [r["artifact"] for r in table["rows"]]
        if rows:
            from PIL import Image

            fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.25 * len(rows)), squeeze=False)
            for ax, row in zip(axes[:, 0], rows):
                ax.imshow(Image.open(images[row["image"]]).convert("RGB"))
                ax.set_xticks([]), ax.set_yticks([])
                texts = [f"{a}: {row[a]}" for a in artifacts]
                if row.get("label") is not None:
                    texts.insert(0, f"label: {row['label']}")
                ax.set_title(_text("   |   ".join(texts)), fontsize=6, loc="left")
            fig.tight_layout()
            fig.savefig(out_dir / READINGS, dpi=110)
            plt.close(fig)
            made.append(READINGS)
    if maps and table and table.get("kind") == "detector":
        _heatmap(plt, maps, table["threshold"], table["reference"], out_dir / HEATMAP)
        made.append(HEATMAP)
    return made


def _heatmap(plt, maps: dict, threshold: float, reference: str, path: Path) -> None:
    """Both probability maps and |difference|, pixels that change side of the threshold outlined."""
    ref, got = maps["reference_map"], maps["artifact_map"]
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64)) if got.shape == ref.shape else None
    panels = [(f"{reference}", ref), (maps["artifact"], got)]
    fig, axes = plt.subplots(1, 3 if diff is not None else 2, figsize=(12, 3.6), squeeze=False)
    for ax, (title, plane) in zip(axes[0], panels):
        shown = ax.imshow(plane, cmap="gray", vmin=0, vmax=1)
        ax.set_title(_text(f"{title}: probability"), fontsize=7)
    if diff is not None:
        ax = axes[0][2]
        shown = ax.imshow(diff, cmap="magma")
        flipped = (got > threshold) != (ref > threshold)
        if flipped.any():
            ax.contour(flipped, levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(
            f"|difference| (max {diff.max():.2g}); cyan: {int(flipped.sum())} px cross {threshold:g}",
            fontsize=7,
        )
        fig.colorbar(shown, ax=ax, fraction=0.046)
    for ax in axes[0]:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(
        _text(f"{maps['image']}: the page where {maps['artifact']} agrees least (IoU {maps['iou']:.4f})"),
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
