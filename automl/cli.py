"""The ``smartecg`` command: one subcommand per user task.

Heavy libraries are imported inside the handlers, so ``smartecg --help`` stays instant.
"""
from __future__ import annotations

import argparse
import logging
import sys

from automl import __version__

log = logging.getLogger("smartecg")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="smartecg: %(levelname)s: %(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from features.dataset import DatasetError
    from features.imageio import ImageReadError

    try:
        return args.handler(args) or 0
    except (DatasetError, ImageReadError, FileNotFoundError, NotADirectoryError, PermissionError,
            ValueError) as exc:
        # One line the user can act on, not a traceback.
        print(f"smartecg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smartecg: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartecg", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"smartecg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    data = commands.add_parser("data", help="make, check and describe ECG image datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")

    synth = data_commands.add_parser("synth", help="write synthetic 12-lead pages for demos and tests")
    synth.add_argument("out", help="output folder (OUT/<Class>/*.jpg)")
    synth.add_argument("--per-class", type=positive_int, default=20, help="pages per class (default 20)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--confound-covid", action="store_true",
                       help="make COVID pages smaller portrait scans, like the public dataset's trap")
    synth.add_argument("--jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    synth.set_defaults(handler=_data_synth)

    report = data_commands.add_parser("report", help="EDA charts, sample pages and the shortcut audit")
    report.add_argument("data", help="dataset folder (<Class>/ or train/<Class>/)")
    report.add_argument("--out", required=True, help="folder for the PNG files, summary.json and report.md")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--jobs", type=positive_int, default=4, help="reader threads (default 4)")
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
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _data_synth(args) -> int:
    from features.dataset import CLASSES
    from features.synthetic import generate_dataset

    out = generate_dataset(args.out, args.per_class, args.seed, confound_covid=args.confound_covid,
                           n_jobs=args.jobs)
    print(f"wrote {len(CLASSES) * args.per_class} synthetic pages to {out} (ground truth: {out / 'synthetic_meta.jsonl'})")
    return 0


def _data_report(args) -> int:
    from automl.eda import write_report
    from features.dataset import scan

    manifest = scan(args.data, n_jobs=args.jobs)
    summary = write_report(manifest, args.out, seed=args.seed)
    counts = ", ".join(f"{c} {n}" for c, n in summary["class_counts"].items())
    print(f"{summary['n_images']} images ({counts}); {len(summary['skipped'])} skipped, "
          f"{len(summary['duplicates_dropped'])} duplicate(s) dropped")
    print(summary["shortcut_audit"]["message"])
    print(f"report: {args.out}/report.md")
    return 0


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
