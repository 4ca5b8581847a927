"""ECGModel as an MLflow pyfunc: what ``mlflow.pyfunc.load_model("models:/smartecg@champion")`` gives.

``predict`` takes a DataFrame with any of three columns, per row the first present of
``image_b64`` (the image file's bytes, base64: what a JSON client such as ``mlflow models serve``
sends), ``image_bytes`` (the raw bytes; base64 over MLflow's REST server) and ``image`` (a file
path on the machine the model runs on), or a plain list of paths or bytes, and returns one row
per image: ``class``, one ``p_<class>`` column per class (calibrated probabilities),
``uncertain`` (the top probability is below the model's threshold, or the page is unlike the
training pages: "uncertain - refer for review"), and the page gate's ``status`` ("read",
"turned": read the right way round, or "refused": no class and no probabilities) with its
``reason`` (:mod:`features.gate`). A row with nothing readable to give (malformed base64, no
image, a path while paths are off) is refused the same way, naming the row, and the other rows
are still answered.

Paths make the model read files where it runs, which a server must not do for a remote client:
they are read unless the load's ``model_config`` says ``image_paths: false``, or, when the load
says nothing, the environment has ``SMARTECG_PYFUNC_PATHS=off`` (for ``mlflow models serve``,
which passes no model_config). ``smartecg serve`` loads with them off; ``smartecg predict`` and
``evaluate`` with them on, as they read the user's own files.
The ECGModel itself is a pickle among the model's artifacts.
"""
from __future__ import annotations

import base64
import binascii
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)
from features.gate import REFUSED, PageCheck
from mlflow.pyfunc import PythonModel

__all__ = ["B64_COLUMN", "BYTES_COLUMN", "INPUT_COLUMN", "PATHS_CONFIG", "PATHS_ENV", "ECGPyfunc", "evaluate_pages",
           "load_with_paths", "model_signature", "pages_from_input", "paths_allowed", "prediction_frame", "save_ecg_model"]

MODEL_FILE = "ecg_model.pkl"
INPUT_COLUMN = "image"  # file paths
BYTES_COLUMN = "image_bytes"  # raw bytes of image files (base64 over REST)
B64_COLUMN = "image_b64"  # the bytes of image files as base64 text (JSON clients)
PAGE_COLUMNS = (B64_COLUMN, BYTES_COLUMN, INPUT_COLUMN)  # per row, the first present is read
PATHS_CONFIG = "image_paths"  # model_config key: may the `image` column be read? (true / false)
PATHS_ENV = "SMARTECG_PYFUNC_PATHS"  # the same for loads that pass no model_config: on / off
_SEND_B64 = f"send the image file's bytes base64-encoded in the {B64_COLUMN!r} column"
_SWITCHES = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


class ECGPyfunc(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["ecg_model"], "rb") as fh:
            self.model = pickle.load(fh)
        self.read_paths = paths_allowed(getattr(context, "model_config", None))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        rows = pages_from_input(model_input, read_paths=getattr(self, "read_paths", True))
        readable = [i for i, row in enumerate(rows) if not isinstance(row, PageCheck)]
        checks: list = list(rows)
        proba = np.full((len(rows), len(self.model.classes)), np.nan)
        if readable:
            gate_checks, read = self.model.predict_checked([rows[i] for i in readable])
            proba[readable] = read
            for i, check in zip(readable, gate_checks):
                checks[i] = check
        return prediction_frame(self.model.classes, proba, self.model.uncertain(proba, checks), checks)


def paths_allowed(model_config: dict | None = None, environ=None) -> bool:
    """Whether the ``image`` column (file paths) may be read: the model_config's ``image_paths``
    when it has one, else ``SMARTECG_PYFUNC_PATHS``, else yes. A value that is neither on nor off
    raises ValueError naming the setting, so a server does not start on a typo."""
    environ = os.environ if environ is None else environ
    if model_config and model_config.get(PATHS_CONFIG) is not None:
        return _switch(model_config[PATHS_CONFIG], f"model_config {PATHS_CONFIG!r}")
    if environ.get(PATHS_ENV, "").strip():
        return _switch(environ[PATHS_ENV], PATHS_ENV)
    return True


def load_with_paths(uri: str, *, read_paths: bool | None = None):
    """``mlflow.pyfunc.load_model(uri)`` with the ``image`` column switched on or off (None: left to
    ``SMARTECG_PYFUNC_PATHS``). A model saved before the switch existed reads paths whatever it is told."""
    import logging

    import mlflow.pyfunc

    if read_paths is None:
        return mlflow.pyfunc.load_model(uri)
    # MLflow warns that such an older model ignores the key, on every load: noise for our users.
    older_model = _DropRecords(f"Argument(s) {PATHS_CONFIG} were ignored")
    logger = logging.getLogger("mlflow.pyfunc")
    logger.addFilter(older_model)
    try:
        return mlflow.pyfunc.load_model(uri, model_config={PATHS_CONFIG: bool(read_paths)})
    finally:
        logger.removeFilter(older_model)


class _DropRecords:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def _switch(value, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _SWITCHES:
        raise ValueError(f"{setting} is {value!r}: set it to on or off")
    return _SWITCHES[word]


def pages_from_input(model_input, *, read_paths: bool = True) -> list:
    """The pages in a pyfunc input: per row the first present of ``image_b64``, ``image_bytes``
    and ``image``, or a refused :class:`~features.gate.PageCheck` when the row has none to give
    (malformed base64, no image, a path while ``read_paths`` is off).

    A DataFrame with one unnamed column, a list, a Series or an array of paths/bytes also works.
    """
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        columns = [c for c in PAGE_COLUMNS if c in model_input.columns]
        if not columns and len(model_input.columns) == 1:
            values = model_input.iloc[:, 0].tolist()
            return [_unnamed(i, v, read_paths) for i, v in enumerate(values)]
        if not columns:
            raise ValueError(f"expected a column {B64_COLUMN!r} (base64 of image files), {BYTES_COLUMN!r} "
                             f"(image bytes) or {INPUT_COLUMN!r} (image paths), got columns "
                             f"{list(model_input.columns)}")
        return [_row_page(i, row, read_paths) for i, row in enumerate(model_input[columns].to_dict("records"))]
    if isinstance(model_input, (str, bytes, Path)):
        model_input = [model_input]
    return [_unnamed(i, v, read_paths) for i, v in enumerate(list(model_input))]


def _row_page(i: int, row: dict, read_paths: bool):
    """Row ``i``'s page from its first present column, or the refusal saying what to send instead."""
    column = next((c for c in PAGE_COLUMNS if not _missing(row.get(c))), None)
    if column is None:
        return _refused(i, f"no image in {', '.join(PAGE_COLUMNS)}; {_SEND_B64}")
    value = row[column]
    if column == B64_COLUMN:
        return _decoded(i, value)
    if column == INPUT_COLUMN:
        return _path(i, value, read_paths)
    return _as_page(value)


def _unnamed(i: int, value, read_paths: bool):
    page = _as_page(value)
    return _path(i, page, read_paths) if isinstance(page, str) else page


def _path(i: int, value, read_paths: bool):
    if not read_paths:
        return _refused(i, f"the {INPUT_COLUMN!r} column (a file path on the server) is switched off here; {_SEND_B64}")
    return _as_page(value)


def _decoded(i: int, value):
    """The bytes a base64 text stands for (whitespace and line breaks ignored), or the row's refusal."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str):
        return _refused(i, f"{B64_COLUMN!r} is a {type(value).__name__}, not base64 text; {_SEND_B64}")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        return _refused(i, f"{B64_COLUMN!r} is not valid base64 ({exc}); {_SEND_B64}")


def _refused(i: int, reason: str) -> PageCheck:
    return PageCheck(f"row {i}", REFUSED, f"row {i}: {reason}", unlike_training=True)


def _missing(value) -> bool:
    """No value in this column for this row (None, NaN, or empty: a JSON client's blank cell)."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) == 0
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
    """Input: any of ``image_b64`` (base64 text), ``image_bytes`` (raw bytes) and ``image`` (file
    paths), each optional so that MLflow's schema enforcement lets a request send only one;
    output: class, probabilities, uncertain, the gate's status and reason."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", INPUT_COLUMN, required=False),
                       ColSpec("binary", BYTES_COLUMN, required=False),
                       ColSpec("string", B64_COLUMN, required=False)]),
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
