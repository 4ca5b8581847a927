"""The TPOT worker process: ``python -m automl.engines.tpot_worker WORKDIR``.

Reads ``WORKDIR/job.json`` and ``WORKDIR/data.npz`` (features, encoded labels), runs TPOT, and
leaves ``WORKDIR/trials.jsonl`` (one line per evaluation, as it happens) and, when TPOT ends on
its own, ``WORKDIR/done.json``. The parent (:mod:`automl.engines.tpot_engine`) stops this whole
process group at the end of the slice; nothing here talks to MLflow.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import uuid
import warnings
from pathlib import Path

from automl.engines.runner import mark_ready, watch_parent


def main(workdir: str) -> int:
    workdir_path = Path(workdir)
    watch_parent()
    job = json.loads((workdir_path / "job.json").read_text())
    import numpy as np

    data = np.load(workdir_path / "data.npz")
    X, y = data["X"], data["y"]
    tpot = _import_tpot()
    from distributed import Client, LocalCluster, Queue
    from sklearn.model_selection import StratifiedKFold

    from automl.engines.tpot_space import EvaluationLog, build_search_space

    n_jobs = int(job["n_jobs"])
    cv = StratifiedKFold(int(job["cv"]), shuffle=True, random_state=job["seed"])
    trials = workdir_path / "trials.jsonl"
    scheduler = job.get("dask_scheduler")
    # Dask workers on other machines cannot append to this machine's file: they queue each trial
    # on the scheduler and this process writes them.
    queue = f"smartecg-trials-{uuid.uuid4().hex}" if scheduler else None
    hook = EvaluationLog(X, y, cv, job["scoring"], str(trials), name=job["metric"], queue=queue)
    space = build_search_space(len(job["classes"]), len(y), X.shape[1], random_state=job["seed"])
    warnings.simplefilter("ignore")  # sklearn/pandas deprecations from TPOT's internals, once per fit
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler, timeout=30))
            client.cluster = _RemoteWorkers(client)
            stack.enter_context(_QueueToFile(Queue(queue, client=client), trials))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_jobs, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
                dashboard_address=None, local_directory=str(workdir_path / "dask")))
            client = stack.enter_context(Client(cluster))
        estimator = tpot.TPOTClassifier(
            search_space=space, scorers=[], scorers_weights=[], other_objective_functions=[hook],
            other_objective_functions_weights=[1], objective_function_names=[job["metric"]],
            cv=int(job["cv"]), max_time_mins=job["max_time_mins"], max_eval_time_mins=job["max_eval_time_mins"],
            n_jobs=n_jobs, client=client, population_size=int(job["population_size"]),
            early_stop=job.get("early_stop"), random_state=job["seed"], verbose=0,
        )
        mark_ready(workdir_path)
        estimator.fit(X, y)
    (workdir_path / "done.json").write_text(json.dumps({"generations": _generations(estimator)}))
    return 0


class _RemoteWorkers:
    """What TPOT 1.x reads of ``client.cluster`` (its workers, to size its queue of evaluations),
    for a client connected to a scheduler by address, which has no cluster object of its own.

    ``status`` is what the client itself checks on a cluster; closing is left to the scheduler's owner.
    """

    def __init__(self, client) -> None:
        from distributed.core import Status

        self._client, self.status = client, Status.running

    @property
    def workers(self) -> dict:
        return self._client.scheduler_info(n_workers=-1)["workers"]


class _QueueToFile:
    """Moves the trials Dask workers queue on the scheduler into ``trials.jsonl``, in a thread."""

    def __init__(self, queue, path: Path) -> None:
        self.queue, self.path = queue, path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="smartecg-trial-queue", daemon=True)

    def __enter__(self) -> "_QueueToFile":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _drain(self) -> None:
        from automl.engines.trialfile import append_line

        while True:
            stopping = self._stop.is_set()
            try:
                # Everything waiting, at once (a get that waits would time out on the scheduler, noisily).
                for record in self.queue.get(batch=True):
                    append_line(self.path, record)
            except Exception:  # the client is closing: what was queued is written, the rest is lost
                return
            if stopping:
                return
            self._stop.wait(0.5)


def _import_tpot():
    """``import tpot`` without its update check, which calls pypi.org (no network here, ever)."""
    try:
        import update_checker

        update_checker.update_check = lambda *args, **kwargs: None
    except ImportError:
        pass
    import tpot

    return tpot


def _generations(estimator) -> int:
    try:
        return int(estimator.evaluated_individuals["Generation"].max()) + 1
    except Exception:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
