"""The ``smartecg`` command: one subcommand per user task.

Heavy libraries are imported inside the handlers, so ``smartecg --help`` stays instant.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from automl import __version__
from automl.experiment import ENGINES

EXPLAIN_METHODS = ("auto", "gradcam", "lime")  # automl.explain's (not imported here: --help stays instant)

log = logging.getLogger("smartecg")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from automl import library_log

    # Before logging's handler is made: it writes to the terminal's stderr, libraries to their log.
    library = library_log.start(args.handler.__name__.strip("_").replace("_", "-"), verbose=args.verbose)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="smartecg: %(levelname)s: %(message)s")
    code = 1
    try:
        code = _run(args)
        return code
    finally:
        if library is not None:
            library.close()
            if code != 0 and library.has_content():
                print(f"smartecg: library messages (TensorFlow, MLflow...) of this run: {library.path}",
                      file=sys.stderr)


def _run(args) -> int:
    """The command's handler, its expected failures each said in one line."""
    from features.dataset import DatasetError
    from features.imageio import ImageReadError

    try:
        return args.handler(args) or 0
    except (DatasetError, ImageReadError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
            ValueError, ConnectionError) as exc:
        # One line the user can act on, not a traceback.
        print(f"smartecg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smartecg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":  # imported lazily; anything else is a bug: show it
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"smartecg: error: {message} (is --tracking-uri the store the search used?)", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartecg", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"smartecg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    tracking_help = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"

    data = commands.add_parser("data", help="make, check and describe ECG image datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")

    synth = data_commands.add_parser("synth", help="write synthetic 12-lead pages for demos and tests")
    synth.add_argument("out", help="output folder (OUT/<Class>/*.jpg)")
    synth.add_argument("--per-class", type=positive_int, default=20, help="pages per class (default 20)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--confound-covid", action="store_true",
                       help="make COVID pages smaller portrait scans, like the public dataset's trap")
    synth.add_argument("--six-by-two", type=float, default=0.0, metavar="SHARE",
                       help="share of pages printed 6x2 (limb leads left, chest leads right); default 0")
    synth.add_argument("--gridless", type=float, default=0.0, metavar="SHARE",
                       help="share of the 6x2 pages printed without grid; default 0")
    synth.add_argument("--header-diagnosis", type=float, default=0.0, metavar="SHARE",
                       help="share of the 6x2 pages whose header names the class (the text trap); default 0")
    synth.add_argument("--confound-layout", action="store_true",
                       help="Normal pages always 3x4, like the public dataset's layout trap")
    synth.add_argument("--jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    synth.set_defaults(handler=_data_synth)

    report = data_commands.add_parser("report", help="EDA charts, sample pages and the shortcut audit")
    report.add_argument("data", help="dataset folder (<Class>/ or train/<Class>/)")
    report.add_argument("--out", required=True, help="folder for the PNG files, summary.json and report.md")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--jobs", type=positive_int, default=4, help="reader threads (default 4)")
    by_site = report.add_mutually_exclusive_group()
    by_site.add_argument("--sites", action="store_true",
                         help="DATA is DATA/<site>/<Class>/: add pages per site and class and the layout audit per site")
    by_site.add_argument("--site-csv", default=None, metavar="FILE",
                         help="CSV with columns path,site (paths relative to DATA) naming every page's site")
    by_site.add_argument("--approximate-sites", action="store_true",
                         help="no site names: use page families (layout | page size) as sites, reported as an approximation")
    report.set_defaults(handler=_data_report)

    split = data_commands.add_parser("split", help="scan a dataset and make (or show) its saved split")
    split.add_argument("data", help="dataset folder")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--jobs", type=positive_int, default=4)
    split.set_defaults(handler=_data_split)

    cache = commands.add_parser("cache", help="show or empty the feature cache ($SMARTECG_CACHE/features)")
    cache_commands = cache.add_subparsers(title="cache commands", metavar="COMMAND")
    dir_help = "feature cache folder (default: $SMARTECG_CACHE/features, else ~/.cache/smartecg/features)"
    info = cache_commands.add_parser("info", help="folder, number of entries, size and size bound")
    info.add_argument("--dir", help=dir_help)
    info.set_defaults(handler=_cache_info)
    clear = cache_commands.add_parser("clear", help="delete the cached feature entries")
    clear.add_argument("--dir", help=dir_help)
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(handler=_cache_clear)

    search = commands.add_parser("search", help="budgeted AutoML search; every trial in MLflow, the best in the registry")
    search.add_argument("--data", help="dataset folder (default: the built-in synthetic demo set)")
    search.add_argument("--budget", required=True, help="wall time for the whole search: 90s, 30m, 2h")
    search.add_argument("--experiment", default=None,
                        help="experiment spec YAML, or a shipped one by name: default, quick, nightly")
    search.add_argument("--engines", default=None, help=f"comma-separated engines to run, from {', '.join(ENGINES)} (default: the spec's)")
    search.add_argument("--seed", type=int, default=0, help="random seed of the split and the engines")
    _scale_out_options(search, tracking_help)
    search.add_argument("--quiet", action="store_true", help="no live progress line")
    search.set_defaults(handler=_search)

    pretrain = commands.add_parser("pretrain", help="train backbones on generated pages (no download) for transfer "
                                   "learning in later searches")
    pretrain.add_argument("--budget", default="60m", help="wall time for page making and training: 10m, 60m (default)")
    pretrain.add_argument("--pages", type=int, default=3000, help="generated training pages, at most (default 3000)")
    pretrain.add_argument("--views", default="leads,signals",
                          help="backbones to train: leads (2-D on the lead mosaic), signals (1-D on the lead signals)")
    pretrain.add_argument("--out", "--weights-dir", dest="out", default=None, metavar="DIR",
                          help="where the backbones go (default: $SMARTECG_CACHE/pretrained, where searches look)")
    pretrain.add_argument("--seed", type=int, default=0, help="seed of the first generated page")
    pretrain.add_argument("--tracking-uri", default=None, help=tracking_help)
    pretrain.set_defaults(handler=_pretrain)

    nightly = commands.add_parser("nightly", help="the nightly re-search: locked, logs what changed in the data, "
                                  "resumes the studies, same holdout every night")
    nightly.add_argument("--data", required=True, help="dataset folder (new images go to training)")
    nightly.add_argument("--experiment", default="nightly", help="experiment spec (default: nightly)")
    nightly.add_argument("--budget", default=None, help="wall time (default: the spec's budget)")
    nightly.add_argument("--state-dir", default=None, metavar="DIR", help="lock, last scan and last summary "
                         "(default: $SMARTECG_CACHE/nightly/<experiment>)")
    nightly.add_argument("--seed", type=int, default=0)
    nightly.add_argument("--progress", action="store_true", help="show the live progress line (off: cron logs)")
    nightly.add_argument("--env-file", default=None, metavar="FILE", help="NAME='value' lines set before the run "
                         "(mode 0600; `schedule install` writes it): tracking URI, cache, logins; "
                         "SMARTECG_OPTUNA_STORAGE is the default of --storage")
    _scale_out_options(nightly, tracking_help)
    nightly.set_defaults(handler=_nightly)

    schedule = commands.add_parser("schedule", help="run `smartecg nightly` every night from cron")
    schedule_commands = schedule.add_subparsers(title="schedule commands", metavar="COMMAND")
    install = schedule_commands.add_parser("install", help="add (or replace) the crontab line; --print only shows it")
    install.add_argument("--at", default="02:00", help="time of day, HH:MM (default 02:00)")
    install.add_argument("--data", required=True, help="dataset folder")
    install.add_argument("--experiment", default="nightly", help="experiment spec (default: nightly)")
    install.add_argument("--budget", default=None, help="wall time (default: the spec's budget)")
    install.add_argument("--log", default=None, metavar="FILE", help="where the runs' output goes "
                         "(default: mlruns/nightly.log)")
    install.add_argument("--env-file", default=None, metavar="FILE", help="where the run's environment is kept, "
                         "mode 0600: tracking URI, storage, cache, logins (default: mlruns/nightly-<experiment>.env)")
    install.add_argument("--print", action="store_true", help="print the line; change nothing")
    install.add_argument("--user", default=None, help="install in this user's crontab (root only)")
    _scale_out_options(install, tracking_help)
    install.set_defaults(handler=_schedule_install)
    uninstall = schedule_commands.add_parser("remove", help="take the nightly line out of the crontab")
    uninstall.add_argument("--experiment", default="nightly", help="experiment spec (default: nightly)")
    uninstall.add_argument("--user", default=None, help="this user's crontab (root only)")
    uninstall.set_defaults(handler=_schedule_remove)

    worker = commands.add_parser("worker", help="add trials to a shared Optuna study (run one per machine or core)")
    worker.add_argument("--study", required=True, help="the study's name: every worker on it shares its trials")
    worker.add_argument("--budget", required=True, help="how long this worker runs: 90s, 30m, 2h")
    worker.add_argument("--data", default=None, help="dataset folder (default: the built-in demo set)")
    worker.add_argument("--experiment", default=None, help="experiment spec whose optuna options it uses")
    worker.add_argument("--trials", type=positive_int, default=None, help="stop after this many trials")
    worker.add_argument("--seed", type=int, default=None, help="sampler seed (default: from the process id, "
                        "so workers explore apart)")
    _scale_out_options(worker, tracking_help, dask=False)
    worker.set_defaults(handler=_worker)

    pull = commands.add_parser("pull", help="download a registered model and its model card")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help="alias to pull (default: champion)")
    which.add_argument("--version", type=positive_int, default=None, help="version number to pull")
    pull.add_argument("--out", required=True, help="folder to write model/ and MODEL_CARD.md into")
    pull.add_argument("--name", default="smartecg", help="registered model name (default: smartecg)")
    pull.add_argument("--tracking-uri", default=None, help=tracking_help)
    pull.set_defaults(handler=_pull)

    export = commands.add_parser("export", help="a registered model as a folder that runs with numpy, scipy, "
                                 "Pillow and onnxruntime only (ONNX)")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help="alias to export (default: champion)")
    which.add_argument("--version", type=positive_int, default=None, help="version number to export")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="what the model becomes (onnx)")
    export.add_argument("--out", required=True, help="new folder to write the export into")
    export.add_argument("--name", default="smartecg", help="registered model name (default: smartecg)")
    export.add_argument("--tracking-uri", default=None, help=tracking_help)
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="classify ECG page images with a registered or pulled model")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--model", default="models:/smartecg@champion",
                         help="model URI or a pulled model folder (default: models:/smartecg@champion)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    predict.add_argument("--explain", nargs="?", const="auto", default=None, choices=EXPLAIN_METHODS,
                         metavar="METHOD", help="also say which leads each answer rests on and write an overlay "
                         "PNG: gradcam (networks), lime (any model) or auto (default when given alone)")
    predict.add_argument("--out", default="explanations", help="folder for the overlays of --explain "
                         "(default: explanations)")
    predict.add_argument("--tracking-uri", default=None, help=tracking_help)
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="which leads a model's answer rests on: Grad-CAM or LIME overlays")
    explain.add_argument("images", nargs="+", help="image files")
    explain.add_argument("--method", default="auto", choices=EXPLAIN_METHODS,
                         help="gradcam (Keras networks), lime (any model), auto: Grad-CAM where it applies")
    explain.add_argument("--out", required=True, help="folder for <image>.<method>.png and .json")
    explain.add_argument("--model", default="models:/smartecg@champion",
                         help="model URI or a pulled model folder (default: models:/smartecg@champion)")
    explain.add_argument("--class", dest="class_name", default=None,
                         help="the class to explain (default: the predicted one)")
    explain.add_argument("--layer", default=None, help="Grad-CAM's layer (default: the last convolution block)")
    explain.add_argument("--samples", type=positive_int, default=300, help="LIME's perturbed pages (default 300)")
    explain.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    explain.add_argument("--tracking-uri", default=None, help=tracking_help)
    explain.set_defaults(handler=_explain)

    digitize = commands.add_parser("digitize", help="the leads of ECG pages as signals in mV: WFDB records or CSV, "
                                   "with the reading drawn over each page")
    digitize.add_argument("images", nargs="+", help="image files")
    digitize.add_argument("--out", required=True, help="folder for <page>.hea/.dat (or .csv) and <page>.png")
    digitize.add_argument("--format", choices=("wfdb", "csv"), default="wfdb", help="signal file format (default wfdb)")
    digitize.add_argument("--fs", type=positive_int, default=500, help="samples per second (default 500)")
    digitize.set_defaults(handler=_digitize)

    evaluate = commands.add_parser("evaluate", help="score a model on a labelled dataset folder (every page)")
    evaluate.add_argument("data", help="dataset folder (<Class>/ or train/<Class>/)")
    evaluate.add_argument("--model", default="models:/smartecg@champion",
                          help="model URI or a pulled model folder (default: models:/smartecg@champion)")
    evaluate.add_argument("--out", default=None, help="folder for metrics.json, confusion.png and roc.png")
    evaluate.add_argument("--tracking-uri", default=None, help=tracking_help)
    loso = evaluate.add_argument_group("leave-one-site-out (trains its own heads; --model is not used)")
    loso.add_argument("--leave-site-out", action="store_true",
                      help="for every site: train on the other sites (federated and pooled), test on it")
    named = loso.add_mutually_exclusive_group()
    named.add_argument("--sites", action="store_true", help="DATA is DATA/<site>/<Class>/")
    named.add_argument("--site-csv", default=None, help="CSV with columns path,site (paths relative to DATA)")
    named.add_argument("--approximate-sites", action="store_true",
                       help="sites approximated by page family (layout and page size): for data naming no hospital")
    loso.add_argument("--rounds", type=positive_int, default=20, help="federated training rounds (default 20)")
    loso.add_argument("--hidden", type=int, default=0, help="hidden units of the head; 0 = linear (default)")
    loso.add_argument("--features", default=None,
                      help="comma-separated feature sets (default: the default experiment's)")
    loso.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    evaluate.set_defaults(handler=_evaluate)

    serve = commands.add_parser("serve", help="a web page and JSON API for uploaded ECG pages, on 127.0.0.1")
    serve.add_argument("--model", default="models:/smartecg@champion",
                       help="model URI or a pulled model folder (default: models:/smartecg@champion)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1 only)")
    serve.add_argument("--port", type=positive_int, default=8080)
    serve.add_argument("--explain", default="auto", choices=("auto", "gradcam", "lime", "none"),
                       help="the page's default explanation (default: auto)")
    serve.add_argument("--lime-samples", type=positive_int, default=100, help="LIME's perturbed pages (default 100)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)")
    serve.add_argument("--max-megapixels", type=float, default=40.0,
                       help="largest page accepted, read from the image header before decoding (default 40: "
                            "a 600 dpi A4 scan is 35)")
    serve.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="time limit per request: 504 when the model overruns it, 503 when it waited that long "
                            "(default 60)")
    serve.add_argument("--allow-lime", action="store_true",
                       help="allow LIME explanations (a hundred model runs per page; default: off, Grad-CAM and "
                            "prediction only)")
    serve.add_argument("--token-file", default=None, metavar="PATH",
                       help="require 'Authorization: Bearer <token>' on /api/*, the token read once from PATH")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a name the Host header may carry besides localhost, 127.0.0.1, ::1 and --host "
                            "(repeatable; a guard against DNS rebinding)")
    serve.add_argument("--reload-on-promote", action=argparse.BooleanOptionalAction, default=True,
                       help="watch the model's alias and serve the new version when a search promotes one "
                       "(default: on, for alias URIs)")
    serve.add_argument("--poll-seconds", type=float, default=30.0, help="how often the alias is checked (default 30)")
    serve.add_argument("--tracking-uri", default=None, help=tracking_help)
    serve.set_defaults(handler=_serve)

    from automl.federated.commands import add_federated_parser

    add_federated_parser(commands, tracking_help, positive_int)

    ui = commands.add_parser("ui", help="the MLflow UI over SmartECG's store, on 127.0.0.1")
    ui.add_argument("--port", type=positive_int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1 only)")
    ui.add_argument("--tracking-uri", default=None, help=tracking_help)
    ui.set_defaults(handler=_ui)
    return parser


def _scale_out_options(parser: argparse.ArgumentParser, tracking_help: str, dask: bool = True) -> None:
    """Where trials, studies and TPOT's evaluations go, and the local weights: shared by every searching command."""
    parser.add_argument("--tracking-uri", default=None, help=tracking_help)
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage of the deep search's study: sqlite:///..., postgresql://user@host/db "
                             "(shared between machines), journal:///path/optuna.log (default: "
                             "sqlite:///mlruns/optuna.db)")
    parser.add_argument("--weights-dir", default=None, metavar="DIR",
                        help="folder with pretrained backbones (`smartecg pretrain --out`) or ImageNet weights "
                             "(efficientnetb0_notop.h5) for transfer learning (default: $SMARTECG_CACHE/pretrained); "
                             "nothing is downloaded")
    if dask:
        parser.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                            help="a running Dask scheduler (tcp://host:8786) whose workers evaluate TPOT's pipelines")


def _with_overrides(spec, args):
    """The spec with the command line's engines, storage, weights and Dask scheduler."""
    if getattr(args, "engines", None):
        spec = spec.with_engines([e.strip() for e in args.engines.split(",") if e.strip()])
    overrides = {"storage": args.storage, "weights_dir": args.weights_dir}
    spec = spec.with_options("optuna", **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "dask_scheduler", None):
        spec = spec.with_options("tpot", dask_scheduler=args.dask_scheduler)
    return spec


def _spec_budget(args, spec) -> float:
    from automl.budget import parse_duration

    if args.budget:
        return parse_duration(args.budget)
    if spec.budget_seconds is None:
        raise ValueError(f"{spec.source}: no budget in the spec; pass --budget (e.g. --budget 2h)")
    return spec.budget_seconds


def smartecg_command() -> list[str]:
    """How this environment runs ``smartecg``: its script beside the interpreter, else ``python -m``
    (cron, subprocesses and benchmarks may not have a virtualenv's ``bin`` on their PATH)."""
    script = Path(sys.executable).with_name("smartecg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "automl.cli"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _data_synth(args) -> int:
    from features.dataset import CLASSES
    from features.synthetic import generate_dataset

    from features.synthetic import LayoutMix

    layouts = LayoutMix(six_by_two=args.six_by_two, gridless=args.gridless, header_diagnosis=args.header_diagnosis,
                        confounded=args.confound_layout)
    out = generate_dataset(args.out, args.per_class, args.seed, confound_covid=args.confound_covid,
                           layouts=layouts, n_jobs=args.jobs)
    print(f"wrote {len(CLASSES) * args.per_class} synthetic pages to {out} (ground truth: {out / 'synthetic_meta.jsonl'})")
    return 0


def _data_report(args) -> int:
    from automl.eda import write_report
    from features.dataset import scan

    from features.cache import default_cache_dir

    manifest, sites, source = _report_sites(args) if args.sites or args.site_csv else (
        scan(args.data, n_jobs=args.jobs), None, "")
    summary = write_report(manifest, args.out, seed=args.seed, n_jobs=-1, cache_dir=default_cache_dir(),
                           sites=sites, site_source=source, approximate_sites=args.approximate_sites)
    counts = ", ".join(f"{c} {n}" for c, n in summary["class_counts"].items())
    print(f"{summary['n_images']} images ({counts}); {len(summary['skipped'])} skipped, "
          f"{len(summary['duplicates_dropped'])} duplicate(s) dropped")
    for audit in ("shortcut_audit", "layout_audit", "header_audit"):
        print(summary[audit]["message"])
    if "sites" in summary:
        pages = summary["sites"]["pages"]
        flagged = [site for site, audit in summary["sites"]["layout_audit"].items() if audit["flagged"]]
        print(f"{len(pages) - 1} site(s){' (approximated from page families)' if args.approximate_sites else ''}: "
              + ", ".join(f"{site} {row['total']}" for site, row in pages.items() if site != "total")
              + (f"; layout predicts the class within {', '.join(flagged)}" if flagged else ""))
    print(f"report: {args.out}/report.md")
    return 0


def _report_sites(args):
    """The pooled manifest, its sites and where they come from, for `data report --sites/--site-csv`."""
    from features.dataset import DatasetError, scan
    from features.sites import holds_sites, pool_sites, scan_sites, sites_from_csv

    if args.site_csv:
        manifest = scan(args.data, n_jobs=args.jobs)
        sites = sites_from_csv(manifest, args.site_csv)
        manifest.warnings += [w for site in sites.values() for w in site.warnings]  # e.g. stale CSV rows
        return manifest, sites, f"the CSV `{args.site_csv}`"
    if not holds_sites(args.data):
        raise DatasetError(f"{args.data}: holds class folders, not site folders; --sites expects "
                           f"{args.data}/<site>/<Class>/ (or name each page's site with --site-csv)")
    sites = scan_sites([args.data], n_jobs=args.jobs)
    return pool_sites(sites, root=args.data), sites, f"the site folders of `{args.data}`"


def _data_split(args) -> int:
    from features.dataset import assign_splits, scan

    manifest = scan(args.data, n_jobs=args.jobs)
    frame = assign_splits(manifest, seed=args.seed)
    table = frame.groupby(["label", "split"]).size().unstack(fill_value=0)
    print(table.reindex(columns=["train", "validation", "holdout"], fill_value=0).to_string())
    print(f"{len(manifest.skipped)} file(s) skipped; data hash {manifest.data_hash()}; "
          f"split saved in {frame.attrs['split_file']}")
    return 0


def _cache_info(args) -> int:
    from features.cache import FeatureCache

    cache = FeatureCache(args.dir)
    stats = cache.stats()
    print(f"feature cache: {cache.root}")
    print(f"{_entries(stats.entries)}, {_human_size(stats.size_bytes)} "
          f"(size bound {_human_size(cache.max_bytes)})")
    return 0


def _cache_clear(args) -> int:
    from features.cache import FeatureCache

    cache = FeatureCache(args.dir)
    if not args.yes:
        if not sys.stdin.isatty():  # nobody to ask: a script must say so explicitly
            print(f"smartecg: error: not clearing {cache.root} without confirmation; pass --yes",
                  file=sys.stderr)
            return 2
        stats = cache.stats()
        try:
            answer = input(f"delete {_entries(stats.entries)} ({_human_size(stats.size_bytes)}) "
                           f"in {cache.root}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    freed = cache.clear()
    print(f"freed {_human_size(freed.size_bytes)}: {_entries(freed.entries)} deleted from {cache.root}")
    return 0


def _pretrain(args) -> int:
    from automl.budget import parse_duration
    from automl.pretrain import pretrain

    result = pretrain(parse_duration(args.budget), pages=args.pages, out=args.out, seed=args.seed,
                      views=tuple(v.strip() for v in args.views.split(",") if v.strip()),
                      tracking_uri=args.tracking_uri)
    for line in result.lines():
        print(line)
    print(f"MLflow run {result.run_id} (experiment smartecg-pretrain)")
    return 0


def _search(args) -> int:
    from automl.budget import parse_duration
    from automl.controller import run_search
    from automl.experiment import load_spec
    from automl.summary import search_summary

    budget = parse_duration(args.budget)
    spec = _with_overrides(load_spec(args.experiment), args)
    result = run_search(spec, budget, data=args.data, seed=args.seed, tracking_uri=args.tracking_uri,
                        progress=not args.quiet)
    print(search_summary(result))
    return 0 if result.best is not None else 1


def _nightly(args) -> int:
    import os

    from automl.experiment import load_spec
    from automl.lock import LockHeld
    from automl.nightly import run_nightly

    if args.env_file:  # before anything reads the environment: cron starts the run with almost none
        from automl.schedule import read_env_file

        os.environ.update(read_env_file(args.env_file))
    args.storage = args.storage or os.environ.get("SMARTECG_OPTUNA_STORAGE")
    spec = _with_overrides(load_spec(args.experiment), args)
    try:
        night = run_nightly(spec, _spec_budget(args, spec), data=args.data, seed=args.seed,
                            tracking_uri=args.tracking_uri, state_dir=args.state_dir, progress=args.progress)
    except LockHeld as exc:
        print(f"smartecg: nightly: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    print(night.summary)
    return 0 if night.search.best is not None else 1


def _schedule_install(args) -> int:
    import os

    from automl.experiment import load_spec
    from automl.schedule import CronError, carried_environment, cron_line, install, write_env_file

    spec = load_spec(args.experiment)  # refused here, not at 2 a.m.
    _spec_budget(args, spec)
    workdir = Path.cwd()
    arguments = ["--data", str(Path(args.data).resolve()), "--experiment", args.experiment]
    for flag, value in (("--budget", args.budget), ("--weights-dir", args.weights_dir),
                        ("--dask-scheduler", args.dask_scheduler)):
        if value:
            arguments += [flag, value]
    # The tracking URI and the storage may hold passwords: they go to the env file, not the crontab.
    environment = carried_environment(os.environ, MLFLOW_TRACKING_URI=args.tracking_uri,
                                      SMARTECG_OPTUNA_STORAGE=args.storage)
    log_file = Path(args.log).resolve() if args.log else workdir / "mlruns" / "nightly.log"
    env_file = Path(args.env_file).resolve() if args.env_file else workdir / "mlruns" / f"nightly-{spec.name}.env"
    line = cron_line(args.at, spec.name, workdir=workdir, arguments=arguments, log_file=log_file, env_file=env_file)
    if args.print:
        print(line)
        print(f"(the line reads {env_file}, which install writes: {', '.join(environment) or 'no variables'})",
              file=sys.stderr)
        return 0
    log_file.parent.mkdir(parents=True, exist_ok=True)
    write_env_file(env_file, environment, user=args.user)
    try:
        changed = install(line, spec.name, user=args.user)
    except CronError as exc:
        print(f"smartecg: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'installed' if changed else 'already installed'}: {line}")
    print(f"the run's environment: {env_file} (mode 0600): {', '.join(environment) or 'no variables'}")
    return 0


def _schedule_remove(args) -> int:
    from automl.experiment import load_spec
    from automl.schedule import CronError, env_file_of, remove

    name = load_spec(args.experiment).name
    try:
        removed = remove(name, user=args.user)
    except CronError as exc:
        print(f"smartecg: error: {exc}", file=sys.stderr)
        return 2
    if not removed:
        print(f"no nightly line of {name} in the crontab")
        return 0
    env_files = [str(path) for path in map(env_file_of, removed) if path is not None]
    print(f"removed the nightly line of {name}" + (f" and its environment file {', '.join(env_files)}"
                                                   if env_files else ""))
    return 0


def _worker(args) -> int:
    import os
    import socket

    from automl.budget import parse_duration
    from automl.controller import run_search
    from automl.experiment import load_spec

    spec = _with_overrides(load_spec(args.experiment).with_engines(["optuna"]), args)
    seed = args.seed if args.seed is not None else os.getpid()
    spec = spec.with_options("optuna", study=args.study, **({"max_trials": args.trials} if args.trials else {}))
    name = f"worker-{socket.gethostname()}-{os.getpid()}"
    result = run_search(spec, parse_duration(args.budget), data=args.data, seed=seed, tracking_uri=args.tracking_uri,
                        progress=False, register=False, run_name=name,
                        run_tags={"smartecg.kind": "worker", "smartecg.study": args.study})
    print(f"{name}: {result.trials} trial(s) added to study {args.study!r} in {result.elapsed:.0f} s; "
          f"MLflow run {result.run_id}")
    return 0 if result.trials else 1


def _pull(args) -> int:
    from automl.registry import CHAMPION, pull
    from automl.tracking import resolve_tracking_uri, use_store

    client = use_store(resolve_tracking_uri(args.tracking_uri))
    alias = None if args.version is not None else (args.alias or CHAMPION)
    folder = pull(client, args.name, Path(args.out), alias=alias, version=args.version)
    print(f"model: {folder}")
    print(f"model card: {folder.parent / 'MODEL_CARD.md'}")
    print(f"use it: mlflow.pyfunc.load_model({str(folder)!r}) or smartecg predict IMAGE --model {folder}")
    return 0


def _export(args) -> int:
    from automl.export import ExportError, export_registered
    from automl.registry import CHAMPION
    from automl.tracking import resolve_tracking_uri, use_store

    client = use_store(resolve_tracking_uri(args.tracking_uri))
    alias = None if args.version is not None else (args.alias or CHAMPION)
    try:
        folder = export_registered(client, args.name, Path(args.out), alias=alias, version=args.version)
    except ExportError as exc:  # a ValueError: main() prints it as one line
        raise ExportError(f"cannot export: {exc}") from None
    print(f"exported: {folder}")
    print(f"run it: python -m {folder.name} PAGE...  (from {folder.resolve().parent}; needs only numpy, "
          "scipy, Pillow and onnxruntime)")
    return 0


def _predict(args) -> int:
    from automl.predict import predict_files

    return predict_files(args.images, args.model, tracking_uri=args.tracking_uri, as_json=args.json,
                         explain=args.explain, out=args.out)


def _explain(args) -> int:
    from automl.predict import explain_files

    return explain_files(args.images, args.model, method=args.method, out=args.out, tracking_uri=args.tracking_uri,
                         class_name=args.class_name, layer=args.layer, lime_samples=args.samples, as_json=args.json)


def _digitize(args) -> int:
    from automl.digitize_pages import digitize_files

    return digitize_files(args.images, args.out, file_format=args.format, fs=args.fs)


def _evaluate(args) -> int:
    if args.leave_site_out:
        from automl.federated.leave_site_out_command import leave_site_out_command

        return leave_site_out_command(args)
    if args.sites or args.site_csv or args.approximate_sites:
        raise ValueError("--sites, --site-csv and --approximate-sites go with --leave-site-out")
    from automl.predict import evaluate_folder

    evaluation = evaluate_folder(args.data, args.model, tracking_uri=args.tracking_uri, out=args.out)
    metrics = evaluation.metrics
    print(f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
          f"ROC-AUC {metrics['roc_auc']:.3f}, ECE {metrics['ece']:.3f}")
    print("per-class F1: " + ", ".join(f"{k[3:]} {v:.3f}" for k, v in metrics.items() if k.startswith("f1_")))
    for line in evaluation.group_lines():
        print(line)
    if args.out:
        print(f"written: {args.out}/metrics.json, confusion.png, roc.png")
    return 0


def _serve(args) -> int:
    from automl.serve import serve

    if min(args.max_upload_mb, args.poll_seconds, args.max_megapixels, args.request_timeout) <= 0:
        raise ValueError("--max-upload-mb, --max-megapixels, --request-timeout and --poll-seconds must be positive")
    print(f"SmartECG on http://{args.host}:{args.port} serving {args.model} (Ctrl-C to stop)", file=sys.stderr)
    try:
        serve(args.model, host=args.host, port=args.port, tracking_uri=args.tracking_uri,
              max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_pixels=int(args.max_megapixels * 1e6),
              explain=args.explain, lime_samples=args.lime_samples, allow_lime=args.allow_lime,
              request_seconds=args.request_timeout, token_file=args.token_file, allowed_hosts=args.allowed_host,
              reload_on_promote=args.reload_on_promote, poll_seconds=args.poll_seconds)
    except KeyboardInterrupt:
        pass
    return 0


def _ui(args) -> int:
    from automl.tracking import ui_command

    command = ui_command(args.tracking_uri, host=args.host, port=args.port)
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    import subprocess

    try:
        return subprocess.call(command, stderr=sys.stderr)  # MLflow's server talks to the user, not to our log
    except KeyboardInterrupt:
        return 0


def _human_size(n_bytes: int) -> str:
    size, unit = float(n_bytes), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n_bytes} B" if unit == "B" else f"{size:.1f} {unit}"


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


if __name__ == "__main__":
    sys.exit(main())
