"""The data report: what is in a dataset, what is wrong with it, and which shortcuts it hides.

Writes PNG charts (class bar and pie charts, sample pages per class, page sizes by class, a
contact sheet of the lead panels found), ``summary.json`` for machines and ``report.md`` for
people. The shortcut audit asks whether page metadata, the layout or the header alone predict
the class. Given sites (:mod:`features.sites`), it adds pages per site and class and the layout
audit within each site.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the OO API: no pyplot state, no display needed

from automl.audit import header_audit, header_profiles, layout_audit, metadata_audit, save_audits
from features.dataset import CLASSES, Manifest
from features.imageio import ImageReadError, load_image
from features.survey import survey_pages

__all__ = ["write_report"]

_COLOURS = dict(zip(CLASSES, ("#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#2ca02c")))


def write_report(manifest: Manifest, out_dir: str | Path, *, samples_per_class: int = 3, seed: int = 0,
                 n_jobs: int | None = 1, cache_dir: str | Path | None = None,
                 sites: dict[str, Manifest] | None = None, site_source: str = "",
                 approximate_sites: bool = False) -> dict:
    """Write the report files into ``out_dir`` and return the summary that went to summary.json.

    ``n_jobs`` and ``cache_dir`` are for finding every page's lead panels (cached like features).
    ``sites`` (site name -> manifest of pages of ``manifest``, said to come from ``site_source``)
    adds a ``sites`` section; ``approximate_sites`` makes the sites from the page families found
    by the survey instead (:func:`features.sites.approximate_sites`), and the report says so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = manifest.frame
    counts = {c: n for c, n in manifest.class_counts().items() if n}
    audit = metadata_audit(frame, seed=seed)
    surveyed, survey, unsurveyed = _survey(frame, n_jobs, cache_dir)
    layouts = layout_audit(surveyed["label"], survey["layout"], seed=seed)
    lead_tops = [min(box[1] for box in boxes.values()) for boxes in survey["boxes"]]
    header = header_audit(surveyed["label"].to_numpy(), header_profiles(surveyed["path"], lead_tops), seed=seed)
    files = {
        "class_counts": _bar_chart(counts, out / "class_counts.png"),
        "class_share": _pie_chart(counts, out / "class_share.png"),
        "samples": _sample_grid(manifest, out / "samples.png", samples_per_class, seed),
        "page_sizes": _size_scatter(manifest, out / "page_sizes.png", seed),
        "panels": _panel_sheet(surveyed, survey, out / "panels.png", seed),
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
        "layout_audit": layouts.to_dict(),
        "header_audit": header.to_dict(),
        "panels_found_by": survey["found_by"].value_counts().to_dict(),
        "fixed_fraction_pages": [str(p) for p, how in zip(surveyed["path"], survey["found_by"]) if how != "projection"],
        "unsurveyed": unsurveyed,
        "files": {k: v.name for k, v in files.items()},
    }
    if approximate_sites:
        from dataclasses import replace

        from features.sites import approximate_sites as by_family

        sites = by_family(replace(manifest, frame=surveyed), survey)
        site_source = "page families (layout | page size) found by the survey"
    if sites is not None:
        summary["sites"] = _site_summary(sites, site_source, approximate_sites, surveyed, survey, seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    save_audits(summary["data_hash"], summary)  # for the model cards of searches on this data
    (out / "report.md").write_text(_markdown(summary))
    return summary


def _survey(frame, n_jobs, cache_dir):
    """Layout and panels of every page; a page that cannot hold 12 leads is listed and left out."""
    unsurveyed: dict[str, str] = {}
    while True:
        try:
            survey = survey_pages([str(p) for p in frame["path"]], n_jobs=n_jobs, cache_dir=cache_dir, progress=False)
            return frame.reset_index(drop=True), survey, unsurveyed
        except ImageReadError as exc:  # rows already computed are cached: the retry only does the rest
            unsurveyed[exc.name] = f"{exc.reason}; {exc.hint}"
            frame = frame[frame["path"].astype(str) != exc.name]


def _site_summary(sites: dict, source: str, approximate: bool, surveyed, survey, seed: int) -> dict:
    """Pages per site and class, and the layout audit on each site's surveyed pages."""
    from features.sites import site_table

    site_of = {str(p): name for name, m in sites.items() for p in m.frame["path"]}
    page_sites = np.array([site_of.get(str(p)) for p in surveyed["path"]], dtype=object)
    layouts = {}
    for name in sites:
        mine = page_sites == name
        layouts[name] = layout_audit(surveyed["label"].to_numpy()[mine], survey["layout"].to_numpy()[mine],
                                     seed=seed).to_dict()
    table = site_table(sites)
    return {
        "source": source,
        "approximate": approximate,
        "pages": {str(site): {str(c): int(n) for c, n in row.items()} for site, row in table.iterrows()},
        "layout_audit": layouts,
    }


def _site_markdown(sites: dict) -> list[str]:
    pages = sites["pages"]
    columns = list(next(iter(pages.values())))
    lines = ["## Sites", "", f"Sites from {sites['source']}."]
    if sites["approximate"]:
        lines += ["", "**Approximation:** this data names no hospital. Each site is a page family (layout and page "
                      "size), which stands in for the hospital that printed it but is not one: two hospitals may "
                      "share a family and one hospital may print two."]
    lines += ["", "| site | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {'**total**' if site == 'total' else site} | " + " | ".join(str(row[c]) for c in columns) + " |"
              for site, row in pages.items()]
    lines += ["", "### Layout audit per site", "",
              "Within one site, does the layout still predict the class?", "",
              "| site | pages surveyed | layouts | Cramer's V | p | verdict |", "|---|---|---|---|---|---|"]
    for site, audit in sites["layout_audit"].items():
        verdict = "WARNING" if audit["flagged"] else "OK"
        lines.append(f"| {site} | {audit['n_images']} | {len(audit['table'])} | {audit['cramers_v']:.2f} | "
                     f"{audit['p_value']:.3f} | {verdict} |")
    lines += [""] + [f"- {site}: {audit['message']}" for site, audit in sites["layout_audit"].items()]
    return lines


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


_SHEET_TILE = (440, 330)  # (width, height) of one page on the contact sheet
_SHEET_COLUMNS = 5


def _panel_sheet(frame, survey, path: Path, seed: int, max_pages: int = 30) -> Path:
    """Pages with their detected lead panels drawn on: every page whose panels were guessed from
    fixed fractions first, then a few of each class and layout, for a person to check at a glance."""
    from PIL import Image, ImageDraw

    picks = _sheet_picks(frame, survey, seed, max_pages)
    rows = max(1, -(-len(picks) // _SHEET_COLUMNS))
    sheet = Image.new("RGB", (_SHEET_TILE[0] * _SHEET_COLUMNS, _SHEET_TILE[1] * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for n, i in enumerate(picks):
        x, y = (n % _SHEET_COLUMNS) * _SHEET_TILE[0], (n // _SHEET_COLUMNS) * _SHEET_TILE[1]
        record = survey.iloc[i]
        caption = f"{frame['label'].iloc[i]} | {record['layout']} | {record['found_by']}"
        draw.text((x + 4, y + 2), caption, fill="black" if record["found_by"] == "projection" else "red")
        draw.text((x + 4, y + 14), Path(str(frame["path"].iloc[i])).name[:60], fill="grey")
        try:
            page = Image.fromarray(np.uint8(load_image(frame["path"].iloc[i], max_side=_SHEET_TILE[0], mode="RGB") * 255))
        except ImageReadError as exc:
            draw.text((x + 4, y + 40), exc.reason, fill="red")
            continue
        page.thumbnail((_SHEET_TILE[0] - 8, _SHEET_TILE[1] - 34))
        scale = page.width / record["width"]
        overlay = ImageDraw.Draw(page)
        for k, (panel, box) in enumerate(record["boxes"].items()):
            colour = _PANEL_COLOURS[k % len(_PANEL_COLOURS)]
            overlay.rectangle([v * scale for v in box], outline=colour, width=2)
            overlay.text((box[0] * scale + 3, box[1] * scale + 2), panel, fill=colour)
        sheet.paste(page, (x + 4, y + 30))
    sheet.save(path)
    return path


_PANEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _sheet_picks(frame, survey, seed: int, max_pages: int) -> list[int]:
    rng = np.random.default_rng(seed)
    guessed = [i for i, how in enumerate(survey["found_by"]) if how != "projection"]
    picks = guessed[: max_pages // 2]
    groups = {}
    for i, key in enumerate(zip(frame["label"], survey["layout"])):
        groups.setdefault(key, []).append(i)
    per_group = max(1, (max_pages - len(picks)) // max(1, len(groups)))
    for key in sorted(groups):
        members = [i for i in groups[key] if i not in picks]
        picks += [members[j] for j in sorted(rng.choice(len(members), min(per_group, len(members)), replace=False))]
    return picks[:max_pages]


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
    layouts, header = summary["layout_audit"], summary["header_audit"]
    classes = list(summary["class_counts"])
    lines += ["", "### Layout", "", layouts["message"], "",
              "| layout | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    lines += [f"| {layout} | " + " | ".join(str(row.get(c, 0)) for c in classes) + " |"
              for layout, row in layouts["table"].items()]
    lines += ["", "### Header", "", header["message"], "",
              "### Lead panels", "",
              f"Found from the printed rows on {summary['panels_found_by'].get('projection', 0)} pages; "
              f"guessed from fixed fractions on {summary['panels_found_by'].get('fixed-fraction', 0)} "
              "(listed first on the contact sheet, in red: check them).", "",
              "![lead panels](panels.png)"]
    lines += [f"- not surveyed: `{p}`: {why}" for p, why in summary["unsurveyed"].items()]
    if "sites" in summary:
        lines += [""] + _site_markdown(summary["sites"])
    lines += ["", "![class counts](class_counts.png) ![class share](class_share.png)", "",
              "![page sizes](page_sizes.png)", "", "![samples](samples.png)", "",
              f"## Skipped files ({len(summary['skipped'])})", ""]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in summary["skipped"]] or ["None."]
    lines += ["", f"## Exact duplicates dropped ({len(summary['duplicates_dropped'])})", ""]
    lines += [f"- `{d['dropped']}` (same bytes as `{d['kept']}`)" for d in summary["duplicates_dropped"]] or ["None."]
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"
