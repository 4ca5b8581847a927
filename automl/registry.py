"""Champion / challenger promotion in the MLflow Model Registry, and pulling a version to disk.

A search's best model becomes a new version of the registered model (default ``smartecg``)
with its holdout metrics, data hash, engine and git commit as tags. It takes the alias
``champion`` only if it beats the current champion re-scored on the same holdout; otherwise
it gets ``challenger``.

The registry never points at a half-written model: the model is saved and loaded back
locally first, uploaded whole, then registered; the version must be READY before any alias moves,
and moving an alias is a single write. A process killed at any step leaves the aliases where
they were.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)
from automl.model_card import model_card
from automl.pyfunc import evaluate_pages, save_ecg_model

__all__ = ["CHAMPION", "CHALLENGER", "Promotion", "promote", "pull", "model_uri", "write_model_files"]

# The data report's audit keys, and the version tags the model card reads them from.
_AUDIT_TAGS = {"shortcut_audit": "audit_metadata", "layout_audit": "audit_layout", "header_audit": "audit_header"}

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT = "model"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Promotion:
    name: str
    version: str
    alias: str  # the alias the new version got
    score: float
    previous_version: str | None  # the champion before this search
    previous_score: float | None  # its score on this search's holdout
    reason: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def model_uri(name: str, alias: str | None = CHAMPION, version: int | str | None = None) -> str:
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def promote(tracker, spec, best, *, holdout_paths: list[str], holdout_labels: np.ndarray, data_hash: str,
            data_counts: dict | None = None, audits: dict | None = None) -> Promotion:
    """Register ``best`` (a ScoredCandidate) as a new version and give it the alias it earned.

    ``data_counts`` (pages per class and split) and ``audits`` (a data report's audit results on
    the same data) go to the version's tags, for its model card, which is also logged to the
    search's run as ``MODEL_CARD.md``.
    """
    import json

    from mlflow.exceptions import MlflowException

    client, name, metric = tracker.client, spec.registry_name, spec.metric
    model, evaluation = best.candidate.model, best.evaluation
    score = evaluation.score(metric)
    run_id = tracker.parent_run_id
    with tempfile.TemporaryDirectory(prefix="smartecg-model-") as tmp:
        local = write_model_files(model, Path(tmp) / MODEL_ARTIFACT)
        tracker.client.log_artifacts(run_id, str(local), MODEL_ARTIFACT)
    try:
        client.create_registered_model(name, description="SmartECG: 12-lead ECG page classifier")
    except MlflowException:
        pass  # exists already
    tags = {"engine": best.candidate.engine, "data_hash": data_hash, "metric": metric,
            "pipeline": (best.candidate.description or model.description)[:5000],
            "git_commit": _run_tag(tracker, "smartecg.git_commit"), "features": ",".join(spec.features),
            "classes": ",".join(model.classes), "holdout_size": str(len(holdout_labels)),
            "fitted_on": ("every page, holdout included (refitted after selection; its holdout figures are of the "
                          "same recipe fitted without the holdout)" if model.holdout_model is not None
                          else "the learn pages (train + validation); the holdout unseen")}
    if math.isfinite(getattr(best, "cv_score", math.nan)):  # what the search chose it on
        tags.update({f"cv_{metric}": f"{best.cv_score:.6g}", "selected_on": best.cv_source[:500]})
    scores = {**evaluation.metrics, **evaluation.group_metrics(),
              "ece_uncalibrated": best.calibration.get("holdout_ece_uncalibrated", math.nan)}
    tags.update({f"holdout_{k}": f"{v:.6g}" for k, v in scores.items() if math.isfinite(v)})
    tags.update({"calibration": best.calibration.get("calibration", "none"),
                 "uncertain_below": str(model.uncertain_below), "data_counts": json.dumps(data_counts or {})})
    tags.update({tag: str(audits[key]["message"])[:5000] for key, tag in _AUDIT_TAGS.items()
                 if audits and isinstance(audits.get(key), dict) and "message" in audits[key]})
    version = client.create_model_version(name, source=f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id, tags=tags,
                                          description=f"{best.candidate.engine}: {model.description}"[:1000])
    _wait_ready(client, name, version.version)

    previous = _alias_version(client, name, CHAMPION)
    previous_score, reason = None, "first model: no champion yet"
    alias = CHAMPION
    if previous is not None:
        previous_score, problem = _rescore(name, previous.version, holdout_paths, holdout_labels, metric)
        if problem:
            reason = f"champion v{previous.version} could not be re-scored ({problem}); replaced"
            log.warning(reason)
        elif score > previous_score:
            reason = f"beats champion v{previous.version} on this holdout: {metric} {score:.4f} > {previous_score:.4f}"
        else:
            alias = CHALLENGER
            reason = (f"does not beat champion v{previous.version} on this holdout: "
                      f"{metric} {score:.4f} <= {previous_score:.4f}")
    client.set_registered_model_alias(name, alias, version.version)
    tracker.set_tags(run_id, {"smartecg.registered_version": version.version, "smartecg.alias": alias})
    client.set_model_version_tag(name, version.version, "promotion", reason)
    card = model_card(name, client.get_model_version(name, version.version))
    tracker.client.log_text(run_id, card, "MODEL_CARD.md")
    return Promotion(name, str(version.version), alias, score, previous.version if previous else None,
                     previous_score, reason)


def _run_tag(tracker, key: str) -> str:
    return tracker.client.get_run(tracker.parent_run_id).data.tags.get(key, "")


def write_model_files(model, folder: Path) -> Path:
    """Save ``model`` as an MLflow pyfunc folder and load it back once, so a broken save fails here.

    The input example is a synthetic page, never one of the user's (patient) pages.
    """
    import mlflow.pyfunc
    import pandas as pd

    from automl.pyfunc import BYTES_COLUMN, model_signature

    example = pd.DataFrame({BYTES_COLUMN: [example_page_bytes()]})
    with tempfile.TemporaryDirectory(prefix="smartecg-pickle-") as tmp, warnings.catch_warnings():
        # MLflow asks for type hints on predict(); our signature is explicit, so the hint is noise.
        warnings.filterwarnings("ignore", message="Add type hints", category=UserWarning)
        pickle_path = save_ecg_model(model, Path(tmp))
        mlflow.pyfunc.save_model(
            str(folder), python_model=str(Path(__file__).with_name("_pyfunc_entry.py")),
            artifacts={"ecg_model": str(pickle_path)}, signature=model_signature(model.classes),
            input_example=example,
            # Our own packages travel with the model, so it loads with the code it was made with.
            code_paths=[str(_PACKAGE_ROOT / "features"), str(_PACKAGE_ROOT / "automl")],
            pip_requirements=_requirements(model),  # explicit: inference would pin an uninstallable smartecg
        )
    out = mlflow.pyfunc.load_model(str(folder)).predict(example)
    if list(out.columns) != ["class", *[f"p_{c}" for c in model.classes], "uncertain", "status", "reason"] \
            or len(out) != 1:
        raise RuntimeError(f"the saved model answers its input example with columns {list(out.columns)}")
    return folder


def example_page_bytes() -> bytes:
    """A small synthetic page as JPEG bytes: the model's input example."""
    import io

    from features.synthetic import make_page

    page = make_page("Normal", seed=0).image
    buffer = io.BytesIO()
    page.convert("L").save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


def _requirements(model=None) -> list[str]:
    """Pinned packages a fresh environment needs to load ``model``; networks need their stack too."""
    from importlib import metadata

    wanted = ["mlflow", "scikit-learn", "numpy", "pandas", "scipy", "scikit-image", "pillow", "tpot", "joblib"]
    layer_modules = getattr(getattr(model, "classifier", None), "layer_modules", None)
    if layer_modules is not None:  # a Keras network
        wanted += ["tensorflow", "keras"]
        if any(m.split(".")[0] == "autokeras" for m in layer_modules()):
            wanted += ["autokeras", "keras-tuner", "tensorboard"]
    pins = []
    for package in wanted:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _wait_ready(client, name: str, version: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"model version {name} v{version} did not become ready (status {status})")
        time.sleep(0.2)


def _alias_version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _rescore(name: str, version: str, paths: list[str], labels: np.ndarray, metric: str) -> tuple[float | None, str]:
    """The registered version's score on this holdout, or (None, why not).

    A version refitted on every page has seen its own search's holdout: its twin fitted without
    the holdout (``holdout_model``) is scored instead, as the challenger's twin is.
    """
    import mlflow.pyfunc

    from automl.evaluate import evaluate

    try:
        loaded = mlflow.pyfunc.load_model(model_uri(name, version=version))
        inner = getattr(loaded.unwrap_python_model(), "model", None)
        if getattr(inner, "holdout_model", None) is None:
            return evaluate_pages(loaded, paths, labels).score(metric), ""
        twin = inner.holdout_model
        return evaluate(labels, twin.predict_proba(paths), twin.classes).score(metric), ""
    except Exception as exc:  # any failure to load or run the old model is reported, not fatal
        return None, f"{type(exc).__name__}: {exc}"[:300]


def pull(client, name: str, out: Path, *, alias: str | None = CHAMPION, version: int | str | None = None) -> Path:
    """Download a registered version's model folder to ``out`` and write ``MODEL_CARD.md`` beside it."""
    import mlflow.artifacts

    mv = client.get_model_version(name, str(version)) if version is not None else _alias_version(client, name, alias)
    if mv is None:
        raise ValueError(f"registered model {name!r} has no version with alias {alias!r}; run `smartecg search` first")
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / MODEL_ARTIFACT
    if model_dir.exists() and any(model_dir.iterdir()):
        raise FileExistsError(f"{model_dir} exists and is not empty; choose another --out")
    with tempfile.TemporaryDirectory(prefix="smartecg-pull-", dir=out) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri(name, version=mv.version), dst_path=tmp))
        got.rename(model_dir)  # whole folder or nothing
    (out / "MODEL_CARD.md").write_text(model_card(name, mv))
    return model_dir
