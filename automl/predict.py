"""``smartecg predict``, ``explain`` and ``evaluate``: a registered or pulled model on image files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)

__all__ = ["ecg_model", "evaluate_folder", "explain_files", "load_pyfunc", "predict_files"]


def load_pyfunc(model: str, tracking_uri: str | None = None, *, read_paths: bool = True):
    """(the loaded pyfunc, how to name it): a pulled model folder, or a URI on the given store.

    ``read_paths``: whether its ``image`` column (file paths) is read; on for the commands here,
    which read the user's own files, off for a server (:mod:`automl.pyfunc`).
    """
    from automl.pyfunc import load_with_paths
    from automl.tracking import resolve_tracking_uri, use_store

    if Path(model).is_dir():
        model = str(Path(model).resolve())
    else:
        use_store(resolve_tracking_uri(tracking_uri))
    return load_with_paths(model, read_paths=read_paths), model


def predict_files(images: list[str], model: str, *, tracking_uri: str | None = None, as_json: bool = False,
                  explain: str | None = None, out: str | Path = "explanations", lime_samples: int = 300) -> int:
    """Print each image's class and probabilities; unreadable images are named and skipped.

    A page whose top probability is below the model's threshold is flagged "uncertain - refer
    for review". With ``explain`` (a method of :mod:`automl.explain`), each answer also says
    which leads it rests on and an overlay PNG is written to ``out``.
    Returns 0 when every image was classified, 1 when some could not be.
    """
    import pandas as pd

    from automl.explain import UNCERTAIN
    from features.imageio import ImageReadError

    loaded, _ = load_pyfunc(model, tracking_uri)
    failed = 0
    for image in images:  # one at a time, so one bad file is named and the others still get an answer
        try:
            record = loaded.predict(pd.DataFrame({"image": [str(Path(image).resolve())]})).iloc[0].to_dict()
            status, reason = record.pop("status", "read"), record.pop("reason", "")
            if status == "refused":  # an answer about the page, on stdout like the others
                print(json.dumps({"image": image, "status": status, "reason": reason}) if as_json
                      else f"{image}: refused: {reason}")
                failed += 1
                continue
            found, overlay = _explained(loaded, image, explain, out, lime_samples) if explain else (None, None)
        except ImageReadError as exc:
            print(f"smartecg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        row = {"image": image, "class": record.pop("class"), "uncertain": bool(record.pop("uncertain", False)),
               "status": status, "reason": reason,
               "probabilities": {k[2:]: round(float(v), 4) for k, v in record.items() if k.startswith("p_")}}
        if found is not None:
            row["explanation"] = {"summary": found.summary, "overlay": str(overlay), "method": found.method,
                                  "lead_shares": found.to_dict()["lead_shares"]}
        if as_json:
            print(json.dumps(row))
            continue
        top = row["probabilities"][row["class"]]
        others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["probabilities"].items(), key=lambda kv: -kv[1])[1:3])
        line = f"{row['image']}: {row['class']} {top:.2f} (then {others})"
        if found is not None:
            line = f"{row['image']}: {found.summary} (then {others}); overlay {overlay}"
        elif row["uncertain"]:
            line += f" - {UNCERTAIN}"
        if status == "turned":
            line += f" ({reason})"
        print(line)
    return 1 if failed else 0


def explain_files(images: list[str], model: str, *, method: str = "auto", out: str | Path = "explanations",
                  tracking_uri: str | None = None, class_name: str | None = None, layer: str | None = None,
                  lime_samples: int = 300, as_json: bool = False) -> int:
    """Explain each image: a summary line, ``<name>.<method>.png`` (overlay) and ``.json`` in ``out``.

    Returns 0 when every image was explained, 1 when some could not be read.
    """
    loaded, _ = load_pyfunc(model, tracking_uri)
    from features.imageio import ImageReadError

    failed = 0
    for image in images:
        try:
            found, overlay = _explained(loaded, image, method, out, lime_samples, class_name=class_name, layer=layer)
        except PageRefused as exc:
            print(f"smartecg: {exc}", file=sys.stderr)
            failed += 1
            continue
        except ImageReadError as exc:
            print(f"smartecg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        record = {"image": image, "overlay": str(overlay), **found.to_dict()}
        overlay.with_suffix(".json").write_text(json.dumps(record, indent=2))
        print(json.dumps(record) if as_json else f"{image}: {found.summary}; overlay {overlay}")
    return 1 if failed else 0


def _explained(loaded, image: str, method: str, out: str | Path, lime_samples: int, **options):
    """(the Explanation, the overlay PNG written) of one image with a loaded pyfunc's ECGModel,
    the page read the right way round; a page the gate refuses raises PageRefused."""
    from automl.explain import explain
    from automl.overlay import write_overlay

    model = ecg_model(loaded)
    check = model.check_pages([image])[0]
    if not check.readable:
        raise PageRefused(image, check.reason)
    found = explain(model, check.source, method=method, lime_samples=lime_samples, **options)
    if check.reason:
        found.notes.append(check.reason)
    return found, write_overlay(found, check.source, Path(out) / f"{Path(image).stem}.{found.method}.png")


class PageRefused(ValueError):
    """The page gate refused a page (not an ECG page, blank, unreadable); the message says why."""

    def __init__(self, image: str, reason: str):
        super().__init__(f"{image}: refused: {reason}")


def ecg_model(loaded):
    """The :class:`~automl.model.ECGModel` inside a loaded SmartECG pyfunc."""
    inner = getattr(loaded.unwrap_python_model(), "model", None)
    if inner is None or not hasattr(inner, "proba_from_features"):
        raise ValueError("this is not a SmartECG model (no ECGModel inside the pyfunc)")
    return inner


def evaluate_folder(data: str, model: str, *, tracking_uri: str | None = None, out: str | None = None):
    """Score a model on every usable page of a labelled dataset folder (all of it, whatever its split).

    Returns the :class:`~automl.evaluate.Evaluation`, with metrics per layout and page-size
    bucket; with ``out``, also writes metrics.json and the confusion and ROC plots there.
    """
    from automl.evaluate import plot_confusion, plot_roc
    from automl.pyfunc import evaluate_pages
    from features.cache import default_cache_dir
    from features.dataset import scan
    from features.survey import survey_pages

    manifest = scan(data, progress=False)
    for skipped in manifest.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    loaded, model = load_pyfunc(model, tracking_uri)
    labels = manifest.frame["label"].to_numpy(dtype=object)
    try:
        paths = [str(p) for p in manifest.frame["path"]]
        survey = survey_pages(paths, n_jobs=-1, cache_dir=default_cache_dir(), progress=False)
        groups = {"layout": survey["layout"].tolist(), "size": survey["size_bucket"].tolist()}
        refused: list[tuple[str, str]] = []
        evaluation = evaluate_pages(loaded, paths, labels, groups, refused=refused)
        for path, reason in refused:
            print(f"refused {path}: {reason}", file=sys.stderr)
    except ValueError as exc:  # e.g. a class folder the model was never trained on
        raise ValueError(f"{data}: {exc}") from None
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps({"model": model, "data": str(data), "n": len(labels),
                                                         **evaluation.metrics, "by_group": evaluation.by_group},
                                                        indent=2))
        plot_confusion(evaluation, folder / "confusion.png", title=f"Confusion matrix: {Path(data).name}")
        plot_roc(evaluation, folder / "roc.png", title=f"ROC, one class vs rest: {Path(data).name}")
    return evaluation
