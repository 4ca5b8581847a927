"""The TPOT worker process: ``python -m automl.engines.tpot_worker WORKDIR``.

Reads ``WORKDIR/job.json`` and ``WORKDIR/data.npz`` (features, encoded labels), runs TPOT, and
leaves ``WORKDIR/trials.jsonl`` (one line per evaluation, as it happens) and, when TPOT ends on
its own, ``WORKDIR/done.json``. The parent (:mod:`automl.engines.tpot_engine`) stops this whole
process group at the end of the slice; nothing here talks to MLflow.
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

from automl.engines.runner import watch_parent


def main(workdir: str) -> int:
    workdir_path = Path(workdir)
    watch_parent()
    job = json.loads((workdir_path / "job.json").read_text())
    import numpy as np

    data = np.load(workdir_path / "data.npz")
    X, y = data["X"], data["y"]
    tpot = _import_tpot()
    from distributed import Client, LocalCluster
    from sklearn.model_selection import StratifiedKFold

    from automl.engines.tpot_space import EvaluationLog, build_search_space

    n_jobs = int(job["n_jobs"])
    cv = StratifiedKFold(int(job["cv"]), shuffle=True, random_state=job["seed"])
    hook = EvaluationLog(X, y, cv, job["scoring"], str(workdir_path / "trials.jsonl"), name=job["metric"])
    space = build_search_space(len(job["classes"]), len(y), X.shape[1], random_state=job["seed"])
    warnings.simplefilter("ignore")  # sklearn/pandas deprecations from TPOT's internals, once per fit
    with LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
                      dashboard_address=None, local_directory=str(workdir_path / "dask")) as cluster, \
            Client(cluster) as client:
        estimator = tpot.TPOTClassifier(
            search_space=space, scorers=[], scorers_weights=[], other_objective_functions=[hook],
            other_objective_functions_weights=[1], objective_function_names=[job["metric"]],
            cv=int(job["cv"]), max_time_mins=job["max_time_mins"], max_eval_time_mins=job["max_eval_time_mins"],
            n_jobs=n_jobs, client=client, population_size=int(job["population_size"]),
            early_stop=job.get("early_stop"), random_state=job["seed"], verbose=0,
        )
        estimator.fit(X, y)
    (workdir_path / "done.json").write_text(json.dumps({"generations": _generations(estimator)}))
    return 0


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
