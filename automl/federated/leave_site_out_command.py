"""`smartecg evaluate --leave-site-out`: find the sites, run :func:`leave_site_out`, print and write the table."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["leave_site_out_command"]

log = logging.getLogger("smartecg")


def leave_site_out_command(args) -> int:
    """`smartecg evaluate DATA --leave-site-out`: the table per left-out site, and its files with --out."""
    import json

    from automl.experiment import load_spec
    from automl.federated.head import HeadSpec
    from automl.federated.leave_site_out import leave_site_out
    from features.cache import default_cache_dir
    from automl.federated.commands import feature_sets_option
    from features.handcrafted import PageFeatures

    if not (args.sites or args.site_csv or args.approximate_sites):
        raise ValueError("say where the sites are: --sites (DATA/<site>/<Class>/), --site-csv FILE, "
                         "or --approximate-sites (page families, for data naming no hospital)")
    if args.hidden < 0:
        raise ValueError(f"--hidden must be 0 (linear) or more units, got {args.hidden}")
    from features.sites import approximate_sites, scan_sites

    sets = feature_sets_option(args.features, load_spec().features)
    if args.approximate_sites:
        from features.dataset import scan
        from features.survey import survey_pages

        manifest = scan(args.data)
        print(f"surveying {len(manifest.frame)} pages for their layout and page size...", file=sys.stderr, flush=True)
        survey = survey_pages([str(p) for p in manifest.frame["path"]], n_jobs=-1, cache_dir=default_cache_dir())
        sites = approximate_sites(manifest, survey)
    else:
        sites = scan_sites(args.data, site_csv=args.site_csv)
    for manifest in sites.values():  # approximated sites' notes ("approximated, families merged in") are the table's
        for warning in manifest.warnings:
            (log.info if args.approximate_sites else log.warning)(warning)
    if len(sites) < 2:
        raise ValueError(f"{args.data}: {len(sites)} site found; leave-one-site-out needs at least two")
    features = PageFeatures(sets=tuple(sets), n_jobs=-1, cache_dir=default_cache_dir())
    result = leave_site_out(sites, features=features, spec=HeadSpec(hidden=args.hidden), rounds=args.rounds,
                            seed=args.seed, approximated=args.approximate_sites)
    if args.approximate_sites:
        print("sites are APPROXIMATED by page layout and size (the data survey), not named hospitals")
    print(result.table())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "leave_site_out.json").write_text(json.dumps(result.to_dict(), indent=2))
        (out / "leave_site_out.md").write_text(result.table() + "\n")
        print(f"written: {out}/leave_site_out.json, leave_site_out.md")
    return 0
