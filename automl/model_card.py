"""The model card of a registered version: what it is, what it was trained and scored on, its limits.

Everything on the card comes from the version's tags in the registry (written once, at
registration, by :func:`automl.registry.promote`), so the card of any version can be made again
at any time, and ``smartecg pull`` writes it beside the model.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["model_card"]

_AUDIT_TITLES = {"audit_metadata": "page metadata (size, file size, colour mode)", "audit_layout": "page layout",
                 "audit_header": "page header (printed text)"}


def model_card(name: str, mv) -> str:
    """Markdown for version ``mv`` (an MLflow ModelVersion) of registered model ``name``."""
    tags: dict[str, Any] = dict(mv.tags)
    aliases = ", ".join(getattr(mv, "aliases", []) or []) or "none"
    metrics = {k[len("holdout_"):]: v for k, v in sorted(tags.items())
               if k.startswith("holdout_") and k != "holdout_size" and not k.startswith("holdout_by_")
               and not k.startswith("holdout_f1_") and not k.startswith("holdout_ece")}
    per_class = {k[len("holdout_f1_"):]: v for k, v in sorted(tags.items()) if k.startswith("holdout_f1_")}
    return "\n".join([
        f"# {name} version {mv.version}", "",
        f"- aliases: {aliases}",
        f"- engine: {tags.get('engine', '?')}",
        f"- pipeline: `{tags.get('pipeline', '?')}`"
        + (" (an ensemble: weight x member, chosen by greedy selection on out-of-fold probabilities)"
           if tags.get("engine") == "ensemble" else ""),
        *([f"- chosen on: {tags.get('metric', 'metric')} {tags[k]} on {tags.get('selected_on', '?')}"
           for k in tags if k.startswith("cv_")][:1]),
        f"- classes: {tags.get('classes', '?')}",
        f"- feature sets: {tags.get('features', '?')}",
        *([f"- fitted on: {tags['fitted_on']}"] if "fitted_on" in tags else []),
        f"- code: git {tags.get('git_commit', '?')}; source run {mv.run_id}",
        f"- promotion: {tags.get('promotion', '?')}", "",
        *_data_section(tags),
        "## Holdout metrics", "",
        f"On {tags.get('holdout_size', '?')} holdout pages that no engine saw"
        + (" (scored with the same recipe fitted without them)." if "fitted_on" in tags
           and tags["fitted_on"].startswith("every page") else "."), "",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in metrics.items()], "",
        *(["| class | F1 |", "|---|---|", *[f"| {k} | {v} |" for k, v in per_class.items()], ""] if per_class else []),
        *_group_table(tags),
        *_calibration_section(tags),
        *_audit_section(tags),
        "## Use", "",
        "```python",
        "import mlflow.pyfunc, pandas as pd",
        "model = mlflow.pyfunc.load_model('model')  # this folder",
        "model.predict(pd.DataFrame({'image': ['page.jpg']}))  # class, p_<class> and uncertain per page",
        "```", "",
        "`smartecg explain PAGE.jpg --model model --out explanations` shows which leads the answer rests on.", "",
        "## Known limits", "",
        "- Trained and scored on the data named by the hash above; scores on other hospitals, devices, "
        "layouts or scanners are unknown until measured (`smartecg evaluate`).",
        "- Small holdout groups give noisy figures: read every score with its number of pages.",
        "- Synthetic pages are drawn from simple wave models; a score on them says the pipeline works, "
        "not how it does on patients.",
        "- Not a medical device: a clinician reads every page, and every page flagged "
        f"uncertain (top probability below {tags.get('uncertain_below', '?')}, or unlike the training pages) "
        "is referred for review.",
        _gate_line(tags.get("page_gate_pages", "0")), "",
    ])


def _gate_line(pages: str) -> str:
    if pages in ("", "0"):
        return ("- No page gate fitted: only unreadable and blank pages are refused; turned pages and pages "
                "that are not ECGs are not recognised.")
    return (f"- Every page is checked first by a gate fitted on the {pages} training pages: a quarter turn, half "
            "turn or mirror image is read the right way round; a page far from every training page, without "
            "rows of traces, blank, or mostly ink is refused with the reason.")


def _data_section(tags: dict) -> list[str]:
    lines = ["## Data", "", f"- data hash: {tags.get('data_hash', '?')}"]
    try:
        counts = json.loads(tags.get("data_counts", ""))
    except ValueError:
        return lines + [""]
    splits = ("train", "validation", "holdout")
    lines += ["", "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    lines += [f"| {label} | " + " | ".join(str(row.get(s, 0)) for s in splits) + " |" for label, row in counts.items()]
    return lines + [""]


def _calibration_section(tags: dict) -> list[str]:
    if "calibration" not in tags:
        return []
    return ["## Calibration", "",
            f"- {tags['calibration']}",
            f"- expected calibration error on the holdout: {tags.get('holdout_ece', '?')} "
            f"(uncalibrated: {tags.get('holdout_ece_uncalibrated', '?')}); 0 means the probabilities can "
            "be read as frequencies", ""]


def _audit_section(tags: dict) -> list[str]:
    lines = ["## Shortcut audit", ""]
    found = [(key, tags[key]) for key in _AUDIT_TITLES if key in tags]
    if not found:
        return lines + ["No data report was made on this data before the search, so no shortcut audit is "
                        "recorded: run `smartecg data report DATA --out REPORT`, then search again.", ""]
    lines.append("Whether the class can be told from how a page looks rather than from its traces "
                 "(from the data report on the same data):")
    lines.append("")
    return lines + [f"- {_AUDIT_TITLES[key]}: {message}" for key, message in found] + [""]


def _group_table(tags: dict) -> list[str]:
    """Holdout metrics per layout and page-size bucket, from the version's ``holdout_by_*`` tags."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith("holdout_by_"):
            kind, group, metric = key[len("holdout_by_"):].split(".", 2)
            groups.setdefault((kind, group), {})[metric] = value
    if not groups:
        return []
    lines = ["## Holdout metrics per layout and page size", "",
             "A model that reads the traces scores alike across layouts and page sizes; a large gap "
             "means it leans on how the page looks.", "",
             "| by | group | pages | accuracy | macro-F1 |", "|---|---|---|---|---|"]
    for (kind, group), values in sorted(groups.items()):
        n = values.get("n", "?")
        lines.append(f"| {kind} | {group} | {n} | {values.get('accuracy', '?')} | {values.get('macro_f1', '?')} |")
    return lines + [""]
