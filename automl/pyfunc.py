"""ECGModel as an MLflow pyfunc: what ``mlflow.pyfunc.load_model("models:/smartecg@champion")`` gives.

``predict`` takes a DataFrame with an ``image`` column (file paths) and/or an ``image_bytes``
column (the raw bytes of image files; base64 over MLflow's REST server), or a plain list of
paths or bytes, and returns one row per image: ``class``, one ``p_<class>`` column per class
(calibrated probabilities), ``uncertain`` (the top probability is below the model's
threshold, or the page is unlike the training pages: "uncertain - refer for review"), and the
page gate's ``status`` ("read", "turned": read the right way round, or "refused": no class and no
probabilities) with its ``reason`` (:mod:`features.gate`).
The ECGModel itself is a pickle among the model's artifacts.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)
from mlflow.pyfunc import PythonModel

__all__ = ["ECGPyfunc", "evaluate_pages", "model_signature", "pages_from_input", "prediction_frame",
           "save_ecg_model"]

MODEL_FILE = "ecg_model.pkl"
INPUT_COLUMN = "image"  # file paths
BYTES_COLUMN = "image_bytes"  # raw bytes of image files (base64 over REST)

class ECGPyfunc(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["ecg_model"], "rb") as fh:
            self.model = pickle.load(fh)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        pages = pages_from_input(model_input)
        checks, proba = self.model.predict_checked(pages)
        return prediction_frame(self.model.classes, proba, self.model.uncertain(proba, checks), checks)


def pages_from_input(model_input) -> list:
    """The pages in a pyfunc input: per row the ``image_bytes`` value when given, else ``image``.

    A DataFrame with one unnamed column, a list, a Series or an array of paths/bytes also works.
    """
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        columns = [c for c in (INPUT_COLUMN, BYTES_COLUMN) if c in model_input.columns]
        if not columns and len(model_input.columns) == 1:
            return [_as_page(v) for v in model_input.iloc[:, 0].tolist()]
        if not columns:
            raise ValueError(f"expected a column {INPUT_COLUMN!r} (image paths) or {BYTES_COLUMN!r} (image bytes), "
                             f"got columns {list(model_input.columns)}")
        rows = model_input[columns].to_dict("records")
        pages = []
        for i, row in enumerate(rows):
            value = row.get(BYTES_COLUMN)
            if _missing(value):
                value = row.get(INPUT_COLUMN)
            if _missing(value):
                raise ValueError(f"row {i} has neither an image path nor image bytes")
            pages.append(_as_page(value))
        return pages
    if isinstance(model_input, (str, bytes, Path)):
        return [_as_page(model_input)]
    return [_as_page(v) for v in list(model_input)]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _as_page(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()  # bytes that went through a DataFrame/array conversion
    return value


def prediction_frame(classes: list[str], proba: np.ndarray, uncertain: np.ndarray, checks=None):
    """One row per page; a refused page (a row of NaN) has an empty class and NaN probabilities."""
    import pandas as pd

    refused = np.isnan(proba).any(axis=1) if len(proba) else np.zeros(0, dtype=bool)
    best = np.where(refused, 0, np.nan_to_num(proba, nan=0.0).argmax(axis=1) if len(proba) else 0)
    frame = pd.DataFrame({"class": np.where(refused, "", np.asarray(classes, dtype=object)[best]).astype(object)
                          if len(proba) else []})
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = proba[:, i] if len(proba) else []
    frame["uncertain"] = np.asarray(uncertain, dtype=bool)
    frame["status"] = [c.status for c in checks] if checks is not None else "read"
    frame["reason"] = [c.reason for c in checks] if checks is not None else ""
    return frame


def save_ecg_model(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    with open(path, "wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def model_signature(classes: list[str]):
    """Input: ``image`` (file paths) and/or ``image_bytes`` (raw bytes); output: class, probabilities,
    uncertain, the gate's status and reason."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN, required=False),
                       ColSpec("binary", BYTES_COLUMN, required=False)]),
        outputs=Schema([ColSpec("string", "class"), *[ColSpec("double", f"p_{c}") for c in classes],
                        ColSpec("boolean", "uncertain"), ColSpec("string", "status"),
                        ColSpec("string", "reason")]),
    )


def evaluate_pages(loaded, paths: list[str], labels, groups=None, *, refused: list | None = None):
    """A loaded pyfunc model's :class:`~automl.evaluate.Evaluation` on labelled image files.

    ``groups`` as for :func:`~automl.evaluate.evaluate`. Pages the model's gate refuses are left
    out of the figures; ``(path, reason)`` of each is appended to ``refused`` when given. Raises
    ValueError when a label is not among the model's classes, or when every page is refused.
    """
    from automl.evaluate import evaluate

    answer = loaded.predict(pd.DataFrame({INPUT_COLUMN: paths}))
    classes = [c[2:] for c in answer.columns if c.startswith("p_")]
    kept = (answer["status"] != "refused").to_numpy() if "status" in answer.columns else np.ones(len(paths), bool)
    if refused is not None:
        refused.extend((paths[i], answer["reason"].iloc[i]) for i in np.flatnonzero(~kept))
    if len(paths) and not kept.any():
        raise ValueError(f"the model refused all {len(paths)} pages (first: {answer['reason'].iloc[0]})")
    groups = {name: [g for g, k in zip(values, kept) if k] for name, values in (groups or {}).items()} or None
    return evaluate(np.asarray(labels, dtype=object)[kept], answer.loc[kept, [f"p_{c}" for c in classes]].to_numpy(),
                    classes, groups)
