"""Champion / challenger promotion in the MLflow Model Registry, and pulling a version to disk.

A search's best model becomes a new version of the registered model (default ``smartecg``)
with its holdout metrics, data hash, engine and git commit as tags, and the identity of the
holdout it was scored on. It takes the alias ``champion`` only if it beats the current champion
on the same holdout (the champion's stored score when it was scored on this very holdout, else
re-scored); otherwise it gets ``challenger``. A champion it replaces becomes ``challenger``.
Scores on different holdouts are never compared, and a champion that cannot be re-scored stays.

Two searches may promote at once. The alias moves only if the champion is still the one the
new version was compared against; when it changed meanwhile, the new champion is compared too
(see :func:`_settle` for the few milliseconds this leaves open).

The registry never points at a half-written model: the model is saved and loaded back
locally first, uploaded whole, then registered; the version must be READY before any alias moves,
and moving an alias is a single write. A process killed at any step leaves the aliases where
they were.
"""
from __future__ import annotations

import base64
import hashlib
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

__all__ = ["CHAMPION", "CHALLENGER", "Holdout", "Promotion", "promote", "pull", "model_uri", "write_model_files"]

# The data report's audit keys, and the version tags the model card reads them from.
_AUDIT_TAGS = {"shortcut_audit": "audit_metadata", "layout_audit": "audit_layout", "header_audit": "audit_header"}

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT = "model"
# Version tags: the identity of the holdout a version was scored on, and its unrounded score there
# (the holdout_* tags are rounded for people). Not named holdout_*: the model card lists those.
HOLDOUT_TAG = "scored_on_holdout"
SCORE_TAG = "score_{metric}"
# How many champions one promotion compares against before it gives up and stays challenger:
# each further one means another search moved the alias while this one was comparing.
MAX_COMPARISONS = 4
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Promotion:
    name: str
    version: str
    alias: str  # the alias the new version got
    score: float
    previous_version: str | None  # the champion it was (last) compared against
    previous_score: float | None  # its score on this search's holdout (None: none, or it could not be scored)
    reason: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def model_uri(name: str, alias: str | None = CHAMPION, version: int | str | None = None) -> str:
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


@dataclass(frozen=True, eq=False)
class Holdout:
    """The labelled pages a search compares models on, and their identity.

    The identity is a hash of the pages' content hashes and labels, not of their paths: two
    searches share it only when they score on the same pages with the same labels, the only case
    in which their scores can be compared. A page added, removed or relabelled makes another one.
    """

    paths: list[str]
    labels: np.ndarray
    identity: str

    @classmethod
    def of(cls, paths, labels, content_hashes=None) -> "Holdout":
        """``content_hashes``: each page's sha256 (the dataset scan's); read from the files when not given."""
        from features.dataset import labelled_content_hash

        if content_hashes is None:
            content_hashes = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
        labels = np.asarray(labels, dtype=object)
        return cls([str(p) for p in paths], labels, labelled_content_hash(content_hashes, labels))

    def score(self, name: str, version: str, metric: str) -> tuple[float | None, str]:
        """A registered version's score on these pages, or (None, why it could not be scored)."""
        return _rescore(name, version, self.paths, self.labels, metric)


def promote(tracker, spec, best, *, holdout: Holdout, data_hash: str, data_counts: dict | None = None,
            audits: dict | None = None) -> Promotion:
    """Register ``best`` (a ScoredCandidate, scored on ``holdout``) as a new version and give it the alias it earned.

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
            "classes": ",".join(model.classes), "holdout_size": str(len(holdout.labels)),
            HOLDOUT_TAG: holdout.identity, SCORE_TAG.format(metric=metric): repr(float(score)),
            "page_gate_pages": str(getattr(model.gate, "n_pages_", 0)),
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

    decision = _settle(client, name, str(version.version), score, metric, holdout)
    tracker.set_tags(run_id, {"smartecg.registered_version": version.version, "smartecg.alias": decision.alias})
    client.set_model_version_tag(name, version.version, "promotion", decision.reason)
    card = model_card(name, client.get_model_version(name, version.version))
    tracker.client.log_text(run_id, card, "MODEL_CARD.md")
    return Promotion(name, str(version.version), decision.alias, score, decision.champion, decision.champion_score,
                     decision.reason)


@dataclass
class _Decision:
    alias: str  # the alias the new version gets
    reason: str
    champion: str | None  # the champion version it was compared against (None: there was none)
    champion_score: float | None  # that champion's score on this holdout (None: none, or not scorable)


def _settle(client, name: str, version: str, score: float, metric: str, holdout: Holdout) -> _Decision:
    """Compare ``version`` with the champion and move the alias it earns, if the champion is still that one.

    MLflow offers neither a lock nor a compare-and-set on aliases, and a comparison takes minutes
    (the champion is loaded and re-scored), so another search may move the champion meanwhile. The
    champion is therefore read again right before the alias moves; when it changed, the new
    champion is compared too (each champion is scored once per promotion), up to
    ``MAX_COMPARISONS`` champions, after which the version stays challenger. What is left open is
    the few milliseconds between that second read and the move: two searches passing their check
    against the same champion in that instant both move the alias, and the later one wins without
    having been compared with the other. Both versions stay registered, with their scores and the
    holdout they were scored on, so ``smartecg pull --version`` reaches either.
    """
    scores: dict[str, tuple[float | None, str]] = {}
    compared: list[str | None] = []  # the champions it was compared against, in turn
    for _ in range(MAX_COMPARISONS):
        champion = _alias_version(client, name, CHAMPION)
        decision = _decide(name, champion, score, metric, holdout, scores)
        compared.append(decision.champion)
        current = _alias_version(client, name, CHAMPION)  # the check, as close to the move as we can have it
        if _version_of(current) != decision.champion:
            log.info("champion of %s moved from v%s to v%s while v%s was compared; comparing again",
                     name, decision.champion, _version_of(current), version)
            continue
        client.set_registered_model_alias(name, decision.alias, version)
        if decision.alias == CHAMPION and champion is not None:
            # The version it displaced is the runner-up: kept reachable as the challenger.
            client.set_registered_model_alias(name, CHALLENGER, champion.version)
        if decision.champion != compared[0]:  # say so: it ends compared with another champion than it began with
            decision.reason += (f" (another search moved the champion from {_named(compared[0])} to "
                                f"{_named(decision.champion)} during the comparison)")
        return decision
    reason = (f"the champion changed {MAX_COMPARISONS} times while v{version} was compared (other searches "
              f"promoting at once); it is made challenger rather than compared any further (its score and holdout "
              f"are in its tags)")
    log.warning(reason)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return _Decision(CHALLENGER, reason, _version_of(_alias_version(client, name, CHAMPION)), None)


def _decide(name: str, champion, score: float, metric: str, holdout: Holdout,
            scores: dict[str, tuple[float | None, str]]) -> _Decision:
    """Champion or challenger against ``champion`` (a ModelVersion or None); ``scores`` memoises its score."""
    if champion is None:
        return _Decision(CHAMPION, "first model: no champion yet", None, None)
    their_version = str(champion.version)
    if their_version not in scores:
        scores[their_version] = _champion_score(name, champion, metric, holdout)
    theirs, source = scores[their_version]
    if theirs is None:  # an old model that no longer loads or runs is kept: never replaced on a failure
        reason = (f"champion v{their_version} could not be re-scored on this holdout ({source}); it stays "
                  f"champion and this version is challenger (check v{their_version} with "
                  f"`smartecg pull --version {their_version}`; if it is broken, move the alias by hand)")
        log.warning(reason)
        return _Decision(CHALLENGER, reason, their_version, None)
    if score > theirs:
        return _Decision(CHAMPION, f"beats champion v{their_version} on this holdout: {metric} {score:.4f} > "
                                   f"{theirs:.4f} ({source})", their_version, theirs)
    return _Decision(CHALLENGER, f"does not beat champion v{their_version} on this holdout: {metric} "
                                 f"{score:.4f} <= {theirs:.4f} ({source})", their_version, theirs)


def _champion_score(name: str, champion, metric: str, holdout: Holdout) -> tuple[float | None, str]:
    """(the champion's score on ``holdout``, where it came from), or (None, why it could not be scored).

    Its stored score is used only when it was scored on this very holdout; otherwise it is re-scored.
    """
    if champion.tags.get(HOLDOUT_TAG) == holdout.identity:
        try:
            stored = float(champion.tags[SCORE_TAG.format(metric=metric)])
        except (KeyError, ValueError):
            stored = math.nan
        if math.isfinite(stored):
            return stored, "its score when registered, on this same holdout"
    theirs, problem = holdout.score(name, str(champion.version), metric)
    return (theirs, "re-scored on this holdout") if not problem else (None, problem)


def _version_of(model_version) -> str | None:
    return None if model_version is None else str(model_version.version)


def _named(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def _run_tag(tracker, key: str) -> str:
    return tracker.client.get_run(tracker.parent_run_id).data.tags.get(key, "")


def write_model_files(model, folder: Path) -> Path:
    """Save ``model`` as an MLflow pyfunc folder and load it back once, so a broken save fails here.

    The input example is a synthetic page, never one of the user's (patient) pages.
    """
    import mlflow.pyfunc
    import pandas as pd

    from automl.pyfunc import B64_COLUMN, PATHS_CONFIG, model_signature

    # Base64 text: MLflow writes the example as the JSON a client posts to `mlflow models serve`.
    example = pd.DataFrame({B64_COLUMN: [base64.b64encode(example_page_bytes()).decode("ascii")]})
    with tempfile.TemporaryDirectory(prefix="smartecg-pickle-") as tmp, warnings.catch_warnings():
        # MLflow asks for type hints on predict(); our signature is explicit, so the hint is noise.
        warnings.filterwarnings("ignore", message="Add type hints", category=UserWarning)
        pickle_path = save_ecg_model(model, Path(tmp))
        mlflow.pyfunc.save_model(
            str(folder), python_model=str(Path(__file__).with_name("_pyfunc_entry.py")),
            artifacts={"ecg_model": str(pickle_path)}, signature=model_signature(model.classes),
            input_example=example,
            # MLflow applies a load's model_config only to keys saved here; None: not said (automl.pyfunc).
            model_config={PATHS_CONFIG: None},
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
    from automl.evaluate import evaluate
    from automl.pyfunc import load_with_paths

    try:
        # The holdout's pages are paths on this machine, whatever the environment says for serving.
        loaded = load_with_paths(model_uri(name, version=version), read_paths=True)
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
