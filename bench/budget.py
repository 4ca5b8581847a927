"""Does a search keep its budget? Wall time against budget, and the time spent outside engines.

Runs ``smartecg search --budget B`` as a user would (a subprocess, timed from outside, so
imports and start-up count) for each budget on one synthetic dataset and one MLflow store, and
prints per search: wall seconds, wall / budget, seconds inside engine slices and the share of
the search's own clock spent outside them (data scan, features, holdout scoring, registry).
Targets: wall <= budget + max(5%, 15 s); outside-engine share < 5%.

Before the timed searches, one untimed 30 s search makes the feature cache and the MLflow
database (a first run on new data pays for both: the figures of that run are printed too).

    python bench/budget.py [--budgets 60 180] [--per-class 30] [--experiment quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# First, even when PYTHONPATH has it: bench/features.py beside this script would hide the package.
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

from _search import timed_search  # noqa: E402
from automl.cli import positive_int  # noqa: E402
from automl.engines import ENGINES  # noqa: E402
from features.synthetic import generate_dataset  # noqa: E402


def run_search(data: Path, budget: int, experiment: str, env: dict, cwd: Path) -> tuple[float, dict]:
    wall, done = timed_search(data, budget, experiment, env, cwd)
    if done.returncode != 0:
        print(f"search with budget {budget} s exited {done.returncode}:\n{done.stdout}{done.stderr}", file=sys.stderr)
    return wall, last_search_metrics(env["MLFLOW_TRACKING_URI"])


def last_search_metrics(uri: str) -> dict:
    from automl.tracking import use_store

    client = use_store(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`smartecg.kind` = 'search'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0].data.metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=positive_int, nargs="+", default=[60, 180], help="seconds (default: 60 180)")
    parser.add_argument("--per-class", type=positive_int, default=30, help="synthetic pages per class (default 30)")
    parser.add_argument("--experiment", default="quick", help="experiment spec (default: quick)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="smartecg-bench-budget-") as tmp:
        tmp = Path(tmp)
        data = generate_dataset(tmp / "data", args.per_class, seed=0, progress=False)
        env = {**os.environ, "SMARTECG_CACHE": str(tmp / "cache"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"}
        print(f"data: {5 * args.per_class} synthetic pages; experiment {args.experiment}; {os.cpu_count()} cores")
        print(f"{'search':<22}{'budget s':>9}{'wall s':>9}{'wall/budget':>12}{'engine s':>10}{'outside engines':>16}"
              f"{'trials':>8}")
        rows = [("first (cold, untimed)", 30)] + [(f"budget {b} s", b) for b in args.budgets]
        verdicts = []
        for label, budget in rows:
            wall, metrics = run_search(data, budget, args.experiment, env, tmp)
            elapsed, engine = metrics["elapsed_seconds"], metrics["engine_seconds"]
            outside = 1 - engine / elapsed if elapsed else 0.0
            print(f"{label:<22}{budget:>9}{wall:>9.1f}{wall / budget:>12.3f}{engine:>10.1f}{outside:>16.1%}"
                  f"{int(metrics.get('trials', 0)):>8}")
            stages = {k[len("seconds_"):]: v for k, v in metrics.items()
                      if k.startswith("seconds_") and k[len("seconds_"):] not in (*ENGINES, "starting", "done")}
            print(" " * 22 + "outside engines, s: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
            if "untimed" not in label:
                limit = budget + max(0.05 * budget, 15.0)
                verdicts.append(f"budget {budget} s: wall {wall:.1f} s <= {limit:.1f} s -> "
                                f"{'PASS' if wall <= limit else 'MISS'}; outside engines {outside:.1%} < 5% -> "
                                f"{'PASS' if outside < 0.05 else 'MISS'}")
        print("(outside engines = 1 - engine seconds / the search's own elapsed seconds, from its MLflow run)")
        print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
