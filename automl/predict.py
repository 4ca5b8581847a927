"""``smartecg predict``: classify image files with a registered or pulled model, one line each."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)

__all__ = ["evaluate_folder", "load_pyfunc", "predict_files"]


def load_pyfunc(model: str, tracking_uri: str | None = None):
    """(the loaded pyfunc, how to name it): a pulled model folder, or a URI on the given store."""
    import mlflow.pyfunc

    from automl.tracking import resolve_tracking_uri, use_store

    if Path(model).is_dir():
        model = str(Path(model).resolve())
    else:
        use_store(resolve_tracking_uri(tracking_uri))
    return mlflow.pyfunc.load_model(model), model


def predict_files(images: list[str], model: str, *, tracking_uri: str | None = None, as_json: bool = False) -> int:
    """Print each image's class and probabilities; unreadable images are named and skipped.

    Returns 0 when every image was classified, 1 when some could not be.
    """
    import pandas as pd

    from features.imageio import ImageReadError

    loaded, _ = load_pyfunc(model, tracking_uri)
    rows, failed = [], 0
    for image in images:  # one at a time, so one bad file is named and the others still get an answer
        try:
            out = loaded.predict(pd.DataFrame({"image": [str(Path(image).resolve())]}))
        except ImageReadError as exc:
            print(f"smartecg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        record = out.iloc[0].to_dict()
        rows.append({"image": image, "class": record.pop("class"),
                     "probabilities": {k[2:]: round(float(v), 4) for k, v in record.items()}})
    for row in rows:
        if as_json:
            print(json.dumps(row))
        else:
            top = row["probabilities"][row["class"]]
            others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["probabilities"].items(), key=lambda kv: -kv[1])[1:3])
            print(f"{row['image']}: {row['class']} {top:.2f} (then {others})")
    return 1 if failed else 0


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
        evaluation = evaluate_pages(loaded, paths, labels, groups)
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
