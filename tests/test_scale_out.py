"""Scale-out on existing engines: workers sharing one Optuna study, TPOT on a Dask scheduler, PostgreSQL."""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cli_helpers import free_port, smartecg, smartecg_command

from features.synthetic import generate_dataset

pytestmark = pytest.mark.slow

DEEP = {"name": "smartecg-scale-test", "registry_name": "scaletest", "metric": "macro_f1", "features": ["signals"],
        "reserve_seconds": 8, "explain": {"pages_per_class": 0},
        "engines": {"optuna": {"families": ["conv1d"], "signal_lengths": [128], "min_epochs": 1, "max_epochs": 2,
                               "candidates": 1}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    data = generate_dataset(root / "data", 5, seed=51, progress=False)
    spec = root / "deep.yaml"
    spec.write_text(json.dumps(DEEP))
    return root, data, spec


def _env(root, uri):
    return {"SMARTECG_CACHE": str(root / "cache"), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}


def test_two_workers_on_one_study_add_distinct_trials_all_logged(setup):
    from automl.tracking import use_store

    root, data, spec = setup
    uri = f"sqlite:///{root / 'workers' / 'mlflow.db'}"
    storage = f"journal://{root / 'workers' / 'optuna.log'}"
    (root / "workers").mkdir()
    command = smartecg_command() + ["worker", "--study", "shared", "--storage", storage, "--data", str(data),
                                    "--experiment", str(spec), "--budget", "120s", "--trials", "1"]  # ends after its trial
    workers = [subprocess.Popen(command, env={**os.environ, **_env(root, uri)}, cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    assert all("1 trial(s) added to study 'shared'" in out for out, _ in outputs)

    import optuna

    from automl.engines.optuna_storage import open_storage

    trials = optuna.load_study(study_name="shared", storage=open_storage(storage)).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1]
    client = use_store(uri)
    experiment = client.get_experiment_by_name("smartecg-scale-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("smartecg.kind") == "worker"]
    children = [r for r in runs if r.data.tags.get("smartecg.kind") == "trial"]
    assert len(parents) == 2 and {p.info.run_name.rsplit("-", 1)[-1] for p in parents} == {str(w.pid) for w in workers}
    assert sorted(int(c.data.tags["smartecg.study_trial"]) for c in children) == [0, 1]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {p.info.run_id for p in parents}
    assert client.search_registered_models() == []  # workers add trials; a search or nightly run registers


def test_tpot_runs_on_a_dask_scheduler_given_by_address(setup):
    from distributed import LocalCluster

    from automl.tracking import use_store

    root, data, _ = setup
    spec = root / "tpot.yaml"
    spec.write_text(json.dumps({"name": "smartecg-dask-test", "registry_name": "dasktest", "features": ["signals"],
                                "reserve_seconds": 8, "explain": {"pages_per_class": 0},
                                "engines": {"tpot": {"population_size": 6, "cv": 3, "max_eval_seconds": 10,
                                                     "candidates": 1}}}))
    uri = f"sqlite:///{root / 'dask' / 'mlflow.db'}"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = smartecg("search", "--data", data, "--budget", "50s", "--experiment", spec, "--quiet",
                       "--dask-scheduler", cluster.scheduler_address, env=_env(root, uri), cwd=root).stdout
        seen = cluster.scheduler.task_prefixes  # what the scheduler ran: TPOT's evaluations among them
    assert "dasktest v1 is now 'champion'" in out, out
    assert seen, "the scheduler ran no task"
    client = use_store(uri)
    experiment = client.get_experiment_by_name("smartecg-dask-test")
    trials = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("smartecg.kind") == "trial"]
    assert len(trials) >= 3 and all(r.data.tags["smartecg.engine"] == "tpot" for r in trials)


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL server on a free local port (Debian's postgresql; .ci/run installs it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs Debian's postgresql package)")
    bin_dir = os.path.dirname(found[-1])
    # A folder of its own under /tmp, not pytest's: pytest keeps its root private (0700) and resets
    # it whenever another pytest session starts, which would lock the postgres user out mid-run.
    folder = Path(tempfile.mkdtemp(prefix="smartecg-postgres-"))
    run_as = []
    if os.geteuid() == 0:  # the server refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
    port = free_port()
    data_dir = folder / "data"
    subprocess.run([*run_as, f"{bin_dir}/initdb", "-D", str(data_dir), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", str(data_dir), "-w", "-l", str(folder / "server.log"),
                    "-o", f"-p {port} -k {folder} -h 127.0.0.1", "start"], check=True, capture_output=True)
    try:
        for name in ("optuna", "mlflow"):
            subprocess.run([*run_as, f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            name], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, f"{bin_dir}/pg_ctl", "-D", str(data_dir), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_study_and_its_runs_live_in_postgresql(setup, postgres):
    import optuna

    from automl.tracking import use_store

    root, data, spec = setup
    storage, uri = f"{postgres}/optuna", f"{postgres}/mlflow"
    out = smartecg("worker", "--study", "on-postgres", "--storage", storage, "--data", data, "--experiment", spec,
                   "--budget", "120s", "--trials", "1", env=_env(root, uri), cwd=root, timeout=300).stdout
    assert "1 trial(s) added to study 'on-postgres'" in out, out
    trials = optuna.load_study(study_name="on-postgres", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 1 and trials[0].state.name == "COMPLETE"
    client = use_store(uri)
    runs = client.search_runs([client.get_experiment_by_name("smartecg-scale-test").experiment_id])
    assert any(r.data.tags.get("smartecg.study_trial") == str(trials[0].number) for r in runs)
