"""MLflow bookkeeping of a search: one parent run per search, one nested run per trial.

Everything goes through an explicit :class:`mlflow.tracking.MlflowClient` (no global active run),
so engines, the progress line and the registry never fight over fluent-API state. The default
store is SQLite under ``./mlruns`` (MLflow 3 refuses the plain file store); ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` points everything at a shared server instead.

Runs carry the host and pid of the search that owns them, so a search started after a
``kill -9`` finds the runs left RUNNING by the dead process and ends them as KILLED.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import automl._mlflow_env  # noqa: F401  (before mlflow is imported)
from automl.engines.base import Trial

__all__ = ["DEFAULT_STORE", "SearchTracker", "git_commit", "resolve_tracking_uri", "ui_command", "use_store"]

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("mlruns")
_PARAM_LIMIT = 500  # MLflow accepts longer values, but the UI's tables do not show them
TAG_ENGINE = "smartecg.engine"
TAG_KIND = "smartecg.kind"  # "search" (parent) or "trial"
TAG_HOST, TAG_PID, TAG_PID_START = "smartecg.host", "smartecg.pid", "smartecg.pid_start"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else SQLite in ``./mlruns/mlflow.db`` (created)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"
    db = _sqlite_file(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)  # SQLite makes the file only
    return uri


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def use_store(tracking_uri: str):
    """Point this process's MLflow (tracking and registry, fluent API included) at ``tracking_uri``.

    ``models:/`` URIs are resolved through the global registry URI, so loading or downloading a
    registered model needs it set; returns a client on the same store.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextlib.contextmanager
def _first_use_lock(tracking_uri: str):
    """One process at a time opens a SQLite store: MLflow creates and migrates its tables on first
    use, and two searches or workers starting together on a new store would both try."""
    db = _sqlite_file(tracking_uri)
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def default_artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of the default SQLite store sit beside it in ``mlruns/artifacts``."""
    db = _sqlite_file(tracking_uri)
    return (db.parent / "artifacts").resolve().as_uri() if db else None  # else a server decides


def git_commit() -> str:
    """The commit SmartECG's code is at, ``-dirty`` when changed; "unknown" outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class SearchTracker:
    """The MLflow side of one search."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        self.tracking_uri = tracking_uri
        with _first_use_lock(tracking_uri):
            self.client = use_store(tracking_uri)
            self.experiment_id = self._experiment(experiment_name)
        self.parent_run_id: str | None = None
        pid = os.getpid()  # every run this tracker makes is owned by this process
        self._owner_tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_PID_START: _start_time(pid)}

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        root = default_artifact_root(self.tracking_uri)
        location = f"{root}/{name}" if root else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another search created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # --- runs of dead searches ------------------------------------------------------------------

    def end_orphaned_runs(self) -> int:
        """End as KILLED the RUNNING runs whose search process (on this host) no longer exists."""
        from mlflow.entities import RunStatus, ViewType

        host, ended = socket.gethostname(), 0
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=5000)
        for run in runs:
            tags = run.data.tags
            if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
                continue  # another machine's search, or not ours: leave it alone
            if _process_alive(int(tags[TAG_PID]), tags.get(TAG_PID_START, "")):
                continue
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            ended += 1
        if ended:
            log.warning("ended %d run(s) left RUNNING by a search that died", ended)
        return ended

    # --- the search's own run -----------------------------------------------------------------

    def start_search(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={TAG_KIND: "search", **tags, **self._owner_tags})
        self.parent_run_id = run.info.run_id
        self.log_params(self.parent_run_id, params)
        return self.parent_run_id

    def finish_search(self, status: str = "FINISHED") -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status)

    # --- trials -----------------------------------------------------------------------------

    def log_trial(self, trial: Trial, metric: str) -> str:
        """A nested run for one evaluated trial, already ended with the trial's status."""
        run = self.client.create_run(
            self.experiment_id, run_name=f"{trial.engine}-{trial.number:04d}",
            tags={"mlflow.parentRunId": self.parent_run_id or "", TAG_ENGINE: trial.engine, TAG_KIND: "trial",
                  "smartecg.status": trial.status, **self._owner_tags},
        )
        run_id = run.info.run_id
        try:
            self._fill_trial_run(run_id, trial, metric)
        except Exception:
            # The trial is logged again when this fails (a locked store): no half-made run beside it.
            with contextlib.suppress(Exception):
                self.client.delete_run(run_id)
            raise
        return run_id

    def _fill_trial_run(self, run_id: str, trial: Trial, metric: str) -> None:
        from mlflow.entities import RunTag

        params = {"pipeline": trial.description, **{f"param.{k}": v for k, v in trial.params.items()}}
        metrics = {f"val_{metric}": trial.score, "fit_seconds": trial.fit_seconds}
        tags = [RunTag("smartecg.error", trial.error[:5000])] if trial.error else []
        if "study_trial" in trial.extra:  # links the run to its Optuna trial, whichever machine ran it
            tags += [RunTag("smartecg.study", str(trial.extra.get("study", ""))),
                     RunTag("smartecg.study_trial", str(trial.extra["study_trial"]))]
        rows = _metric_rows(metrics) + _epoch_rows(trial.extra.get("epochs", []), metric)
        # One batch: every SQLite commit costs, and a search logs hundreds of trials.
        self.client.log_batch(run_id, metrics=rows, params=_param_rows(params), tags=tags)
        # A pruned trial ran as designed (the pruner stopped it): FINISHED, with its status tag.
        status = ("FINISHED" if trial.status in ("ok", "pruned")
                  else "KILLED" if trial.status == "stopped" else "FAILED")
        self.client.set_terminated(run_id, status)

    # --- helpers ----------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.client.log_batch(run_id, params=_param_rows(params))

    def log_metrics(self, run_id: str, metrics: dict[str, float], prefix: str = "") -> None:
        rows = _metric_rows(metrics, prefix)
        if rows:
            self.client.log_batch(run_id, metrics=rows)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_dict(self, run_id: str, data: dict, name: str) -> None:
        self.client.log_text(run_id, json.dumps(data, indent=2, default=str), name)


def _param_rows(params: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k[:250], _param_value(v)) for k, v in params.items()]


def _metric_rows(metrics: dict[str, float | None], prefix: str = "") -> list:
    """Metric entities, one timestamp; values that are None or not finite are left out."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(prefix + k, float(v), now, 0) for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))]


def _epoch_rows(epochs: list[dict], metric: str) -> list:
    """Per-epoch curves of a deep trial (``epoch_loss``, ``epoch_val_loss``, ``epoch_val_<metric>``), step = epoch."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    names = {"loss": "epoch_loss", "val_loss": "epoch_val_loss", "val_score": f"epoch_val_{metric}"}
    return [Metric(name, float(epoch[key]), now, int(epoch["epoch"])) for epoch in epochs
            for key, name in names.items() if epoch.get(key) is not None and math.isfinite(float(epoch[key]))]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _PARAM_LIMIT else text[: _PARAM_LIMIT - 3] + "..."


def _process_alive(pid: int, start_time: str = "") -> bool:
    """Whether ``pid`` still runs and is the same process (a reused pid has another start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's: only the start time can tell
    return not start_time or _start_time(pid) in ("", start_time)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name in brackets may hold spaces


def ui_command(tracking_uri: str | None, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """``mlflow server`` over the same store and artifact root a search writes to."""
    import sys

    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith("sqlite:"):
        raise ValueError(f"{uri} is a tracking server already: open it in a browser instead of `smartecg ui`")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
               "--port", str(port), "--workers", "1"]
    artifacts = default_artifact_root(uri)
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return command
