"""The data report: what is in a dataset, what is wrong with it, and which shortcuts it hides.

Writes PNG charts (class bar and pie charts, sample pages per class, page sizes by class),
``summary.json`` for machines and ``report.md`` for people.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the OO API: no pyplot state, no display needed

from automl.audit import metadata_audit
from features.dataset import CLASSES, Manifest
from features.imageio import ImageReadError, load_image

__all__ = ["write_report"]

_COLOURS = dict(zip(CLASSES, ("#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#2ca02c")))


def write_report(manifest: Manifest, out_dir: str | Path, *, samples_per_class: int = 3, seed: int = 0) -> dict:
    """Write the report files into ``out_dir`` and return the summary that went to summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = manifest.frame
    counts = {c: n for c, n in manifest.class_counts().items() if n}
    audit = metadata_audit(frame, seed=seed)
    files = {
        "class_counts": _bar_chart(counts, out / "class_counts.png"),
        "class_share": _pie_chart(counts, out / "class_share.png"),
        "samples": _sample_grid(manifest, out / "samples.png", samples_per_class, seed),
        "page_sizes": _size_scatter(manifest, out / "page_sizes.png", seed),
    }
    sizes = frame.groupby("label")[["width", "height"]].agg(lambda s: sorted(set(map(int, s))))
    summary = {
        "root": str(manifest.root),
        "layout": manifest.layout,
        "data_hash": manifest.data_hash(),
        "n_images": int(len(frame)),
        "class_counts": counts,
        "page_sizes": {label: {"distinct": int(len(set(zip(g["width"], g["height"])))),
                               "most_common": _most_common_size(g)}
                       for label, g in frame.groupby("label")},
        "widths_by_class": sizes["width"].to_dict(),
        "heights_by_class": sizes["height"].to_dict(),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in manifest.skipped],
        "duplicates_dropped": [{"dropped": str(a), "kept": str(b)} for a, b in manifest.dropped_duplicates],
        "warnings": manifest.warnings,
        "shortcut_audit": audit.to_dict(),
        "files": {k: v.name for k, v in files.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_markdown(summary))
    return summary


def _most_common_size(group) -> str:
    w, h = group.groupby(["width", "height"]).size().idxmax()
    return f"{int(w)}x{int(h)}"


def _bar_chart(counts: dict, path: Path) -> Path:
    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.subplots()
    bars = ax.bar(list(counts), list(counts.values()), color=[_COLOURS[c] for c in counts])
    ax.bar_label(bars)
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _pie_chart(counts: dict, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 5.5), dpi=110)
    ax = fig.subplots()
    ax.pie(list(counts.values()), labels=list(counts), autopct="%1.0f%%",
           colors=[_COLOURS[c] for c in counts], startangle=90, counterclock=False)
    ax.set_title("Class share")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _sample_grid(manifest: Manifest, path: Path, per_class: int, seed: int) -> Path:
    classes = manifest.classes
    fig = Figure(figsize=(4.2 * per_class, 3.0 * len(classes)), dpi=100)
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    rng = np.random.default_rng(seed)
    for row, label in enumerate(classes):
        paths = manifest.frame.loc[manifest.frame["label"] == label, "path"].tolist()
        picks = rng.choice(len(paths), size=min(per_class, len(paths)), replace=False)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(picks):
                try:
                    ax.imshow(load_image(paths[picks[col]], max_side=600, mode="RGB"))
                except ImageReadError as exc:  # a file changed since the scan
                    ax.text(0.5, 0.5, exc.reason, ha="center", va="center", wrap=True)
                ax.set_title(Path(paths[picks[col]]).name, fontsize=8)
            else:
                ax.axis("off")
        axes[row][0].set_ylabel(label, fontsize=11)
    fig.suptitle("Sample pages per class")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _size_scatter(manifest: Manifest, path: Path, seed: int) -> Path:
    fig = Figure(figsize=(7, 5), dpi=110)
    ax = fig.subplots()
    rng = np.random.default_rng(seed)
    for label, group in manifest.frame.groupby("label"):
        # Jitter of a few pixels so that pages of one size show as a cloud, not a single dot.
        jitter = rng.normal(0, 6, size=(len(group), 2))
        ax.scatter(group["width"] + jitter[:, 0], group["height"] + jitter[:, 1], s=14, alpha=0.6,
                   label=f"{label} ({len(group)})", color=_COLOURS[label])
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("Page size by class (a cluster of one class is a shortcut)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _markdown(summary: dict) -> str:
    audit = summary["shortcut_audit"]
    lines = [
        "# SmartECG data report",
        "",
        f"Data: `{summary['root']}` ({summary['layout']} layout), {summary['n_images']} usable images, "
        f"data hash `{summary['data_hash']}`.",
        "",
        "## Shortcut audit",
        "",
        audit["message"],
        "",
        "| class | images | distinct page sizes | most common size | recall from metadata alone |",
        "|---|---|---|---|---|",
    ]
    for label, n in summary["class_counts"].items():
        sizes = summary["page_sizes"][label]
        recall = audit["per_class_recall"].get(label)
        lines.append(f"| {label} | {n} | {sizes['distinct']} | {sizes['most_common']} | "
                     f"{'n/a' if recall is None else f'{recall:.2f}'} |")
    lines += ["", "![class counts](class_counts.png) ![class share](class_share.png)", "",
              "![page sizes](page_sizes.png)", "", "![samples](samples.png)", "",
              f"## Skipped files ({len(summary['skipped'])})", ""]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in summary["skipped"]] or ["None."]
    lines += ["", f"## Exact duplicates dropped ({len(summary['duplicates_dropped'])})", ""]
    lines += [f"- `{d['dropped']}` (same bytes as `{d['kept']}`)" for d in summary["duplicates_dropped"]] or ["None."]
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"
