"""Sites: which hospital (or, failing names, which page family) each page of a dataset comes from.

Federated training keeps every site's pages at the site, and leave-one-site-out evaluation tests
on a site the model never saw; both need the dataset cut into sites. Three ways to name them:

* several dataset folders, one per site: ``A/<Class>/...  B/<Class>/...`` (site = folder name);
* one folder of site folders: ``DATA/<site>/<Class>/...``;
* one dataset folder plus a CSV with columns ``path,site`` (paths relative to the dataset
  folder, or absolute).

The public dataset names no hospital. :func:`approximate_sites` stands in page families (layout
and page size, from :func:`features.survey.survey_pages`): each hospital printed its own layout,
so a family is close to a hospital, but it is an approximation and is reported as one.

Each site is a :class:`~features.dataset.Manifest` of its own pages, with a ``site`` column.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from features.dataset import (
    _SPLIT_FOLDERS,
    CLASSES,
    DatasetError,
    Manifest,
    _left_out,
    canonical_class,
    scan,
)

__all__ = [
    "MIN_APPROXIMATE_SITE_PAGES",
    "approximate_sites",
    "holds_sites",
    "pool_sites",
    "scan_sites",
    "site_table",
    "sites_from_csv",
]

# A page family smaller than this is merged into its nearest family: a leave-one-site-out test on
# a handful of pages says nothing, and a federated client with so few pages adds only noise.
MIN_APPROXIMATE_SITE_PAGES = 10
_SHOWN = 3  # how many example paths an error message names


def scan_sites(dirs, *, site_csv=None, **scan_kwargs) -> dict[str, Manifest]:
    """Scan a dataset cut into sites; return site name -> that site's manifest, in a stable order.

    ``dirs`` is one folder or a list of them:

    * several folders: each is a dataset (``<Class>/...``) and a site, named after its folder
      (folders of the same name are told apart by their parents: ``north/ecg``, ``south/ecg``);
    * one folder whose subfolders are not class folders: each subfolder is a site (``<site>/<Class>/...``);
    * one dataset folder (class folders inside) with ``site_csv``: the CSV says each page's site;
    * one dataset folder without ``site_csv``: a single site.

    ``scan_kwargs`` go to :func:`features.dataset.scan`.

    Raises:
        DatasetError: a site has no usable page or fewer than two classes, a page is missing from
            ``site_csv``, the same bytes sit in two sites under different classes, and every
            error :func:`~features.dataset.scan` raises, each naming the site.
    """
    dirs = [Path(dirs)] if isinstance(dirs, (str, os.PathLike)) else [Path(d) for d in dirs]
    if not dirs:
        raise DatasetError("no site folder given; give DATA/<site>/<Class>/ or one folder per site")
    if site_csv is not None:
        if len(dirs) != 1:
            raise DatasetError(f"{site_csv}: a site CSV goes with one dataset folder, not {len(dirs)}; "
                               "give the folder its paths are relative to")
        return sites_from_csv(scan(dirs[0], **scan_kwargs), site_csv)
    if len(dirs) == 1 and holds_sites(dirs[0]):
        folders = _visible_subfolders(dirs[0])
        named = [(d.name, d) for d in folders]
    else:
        named = list(zip(_site_names(dirs), dirs))
    sites = {name: _scan_site(name, folder, scan_kwargs) for name, folder in named}
    _mark_shared_pages(sites)
    return sites


def holds_sites(folder) -> bool:
    """Whether ``folder`` is ``<site>/<Class>/...`` (True) or a dataset of class folders (False).

    Raises DatasetError when it is neither clearly: no subfolder, or class and other folders mixed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder; give DATA/<site>/<Class>/ or one dataset folder per site")
    subfolders = _visible_subfolders(folder)
    dataset_like = [d.name for d in subfolders if _is_class_or_split_folder(d.name)]
    if not subfolders:
        raise DatasetError(f"{folder}: no subfolder; expected {folder}/<site>/<Class>/ "
                           f"with <Class> one of {', '.join(CLASSES)}")
    if dataset_like and len(dataset_like) < len(subfolders):
        others = [d.name for d in subfolders if not _is_class_or_split_folder(d.name)]
        raise DatasetError(
            f"{folder}: class folders ({', '.join(dataset_like[:_SHOWN])}) beside other folders "
            f"({', '.join(others[:_SHOWN])}); put every site's class folders in its own {folder}/<site>/"
        )
    return not dataset_like


def sites_from_csv(manifest: Manifest, site_csv) -> dict[str, Manifest]:
    """Cut a scanned dataset into sites by a CSV of ``path,site`` rows (paths relative to the
    dataset folder or absolute), sites in name order.

    A page the CSV leaves out is an error (a page of no site would silently drop out of
    leave-one-site-out); a row naming a page the scan did not keep is a warning of its site.
    """
    site_csv = Path(site_csv)
    rows = _read_site_csv(site_csv)
    root = manifest.root
    key_of = {}  # normalised absolute path -> site
    for line, (path, site) in rows:
        key = _key(Path(path) if Path(path).is_absolute() else root / path)
        if key in key_of and key_of[key] != site:
            raise DatasetError(f"{site_csv}:{line}: {path} is given two sites ({key_of[key]} and {site}); keep one row")
        key_of[key] = site
    frame = manifest.frame.assign(site=[key_of.get(_key(p)) for p in manifest.frame["path"]])
    unsited = frame.loc[frame["site"].isna(), "path"].tolist()
    if unsited:
        examples = ", ".join(str(p) for p in unsited[:_SHOWN])
        raise DatasetError(
            f"{site_csv}: {len(unsited)} page(s) of {root} have no site, e.g. {examples}; add a `path,site` "
            f"row for each (path relative to {root}), or move them out of the dataset"
        )
    kept = {_key(p) for p in frame["path"]}
    names = sorted(set(key_of.values()))
    sites = {}
    for name in names:
        own = frame[frame["site"] == name].reset_index(drop=True)
        missing = [p for p, s in key_of.items() if s == name and p not in kept]
        warnings = []
        if missing:
            warnings.append(f"site {name}: {len(missing)} row(s) of {site_csv} name pages the scan did not keep "
                            f"(missing, skipped or duplicate), e.g. {', '.join(missing[:_SHOWN])}; "
                            "fix the paths or drop the rows")
        site = replace(
            manifest, frame=own,
            skipped=[s for s in manifest.skipped if key_of.get(_key(s.path)) == name],
            dropped_duplicates=[(a, b) for a, b in manifest.dropped_duplicates if key_of.get(_key(b)) == name],
            warnings=warnings,
        )
        _check_site(name, site, site_csv)
        sites[name] = site
    return sites


def pool_sites(sites: dict[str, Manifest], root=None) -> Manifest:
    """All sites' pages as one manifest (``site`` column kept), e.g. for the pooled data report."""
    if not sites:
        raise DatasetError("no site to pool")
    manifests = list(sites.values())
    if root is None:
        root = Path(os.path.commonpath([str(m.root.resolve()) for m in manifests]))
    layouts = {m.layout for m in manifests}
    return Manifest(
        root=Path(root), layout=layouts.pop() if len(layouts) == 1 else "mixed",
        frame=pd.concat([m.frame for m in manifests], ignore_index=True),
        skipped=[s for m in manifests for s in m.skipped],
        dropped_duplicates=[d for m in manifests for d in m.dropped_duplicates],
        warnings=[w for m in manifests for w in m.warnings],
    )


def approximate_sites(manifest: Manifest, survey_frame: pd.DataFrame, *,
                      min_pages: int = MIN_APPROXIMATE_SITE_PAGES) -> dict[str, Manifest]:
    """Sites for data that names none: one per page family, an APPROXIMATION of the hospital.

    Row ``i`` of ``survey_frame`` (from :func:`features.survey.survey_pages`) describes row ``i``
    of ``manifest.frame``. A family is the layout and the page-size bucket, named e.g.
    ``3x4_rhythm|landscape_ge2000``: in the public dataset each hospital printed its own layout on
    its own paper, so a family stands for a hospital, but two hospitals may share one and one may
    print two. Whatever is reported per approximate site must say so.

    No site is smaller than ``min_pages`` (unless the data is). A smaller family joins, in turn:
    the largest big enough family of its layout; else the other small families of its layout
    (site ``<layout>|any_size``); else the largest site of its base layout (``3x4``/``6x2``,
    whatever the rhythm strip and grid), or the other small ones of that base layout
    (``<base>_any|any_size``); else a site ``other``, which itself joins the largest site while
    it is too small. Sites are in decreasing size, then name; each says in its warnings that it
    is approximated and which families were merged into it.
    """
    if len(survey_frame) != len(manifest.frame):
        raise ValueError(f"survey_frame has {len(survey_frame)} rows for {len(manifest.frame)} pages; "
                         "survey the manifest's pages in its order")
    families = [f"{layout}|{bucket}" for layout, bucket in zip(survey_frame["layout"].astype(str),
                                                               survey_frame["size_bucket"].astype(str))]
    site_of_family = _merge_small_families(families, min_pages)
    frame = manifest.frame.assign(site=[site_of_family[f] for f in families])
    sizes = frame["site"].value_counts()
    sites = {}
    for name in sorted(sizes.index, key=lambda s: (-sizes[s], s)):
        absorbed = sorted(f for f, site in site_of_family.items() if site == name and f != name)
        note = (f"site {name} is approximated from the page layout and size, not a named hospital"
                + (f"; families merged in: {', '.join(absorbed)}" if absorbed else ""))
        sites[name] = replace(manifest, frame=frame[frame["site"] == name].reset_index(drop=True),
                              skipped=[], dropped_duplicates=[], warnings=[note])
    return sites


def _merge_small_families(families: list[str], min_pages: int) -> dict[str, str]:
    """family -> site, by the rule of :func:`approximate_sites`."""
    sizes = Counter(families)
    units = {f: [f] for f in sizes}  # site so far -> the families in it

    def pages(unit):
        return sum(sizes[f] for f in units[unit])

    def layout(unit):
        return unit.split("|", 1)[0]

    def base(unit):
        return layout(unit).split("_", 1)[0]

    for key, pooled in ((layout, "{}|any_size"), (base, "{}_any|any_size")):
        big = sorted((u for u in units if pages(u) >= min_pages), key=lambda u: (-pages(u), u))
        for unit in sorted(u for u in units if pages(u) < min_pages):
            home = next((b for b in big if key(b) == key(unit)), pooled.format(key(unit)))
            if home != unit:
                units.setdefault(home, []).extend(units.pop(unit))
    small = [u for u in units if pages(u) < min_pages]
    if small:
        units.setdefault("other", []).extend(f for u in small if u != "other" for f in units.pop(u))
        if pages("other") < min_pages and len(units) > 1:
            largest = max((u for u in units if u != "other"), key=lambda u: (pages(u), u))
            units[largest].extend(units.pop("other"))
    return {f: unit for unit, members in units.items() for f in members}


def site_table(sites: dict[str, Manifest]) -> pd.DataFrame:
    """Pages per site (rows, then ``total``) and class (columns present anywhere, then ``total``)."""
    counts = {name: m.class_counts() for name, m in sites.items()}
    present = [c for c in CLASSES if any(row[c] for row in counts.values())]
    table = pd.DataFrame([[row[c] for c in present] for row in counts.values()],
                         index=pd.Index(list(counts), name="site"), columns=present, dtype=int)
    table.loc["total"] = table.sum(axis=0)
    table["total"] = table.sum(axis=1)
    return table


# --- helpers ---------------------------------------------------------------------------------------

def _visible_subfolders(folder: Path) -> list[Path]:
    """Subfolders a scan would look into (not hidden, not macOS leftovers), in name order."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and _left_out(d, is_dir=True) is None)


def _is_class_or_split_folder(name: str) -> bool:
    return canonical_class(name) is not None or name.lower() in _SPLIT_FOLDERS


def _site_names(dirs: list[Path]) -> list[str]:
    """Each folder's name; where two share one, as many parent folders as tell them apart."""
    resolved = [d.resolve() for d in dirs]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise DatasetError(f"{dirs[i]}: given twice as a site; give each site's folder once")
    names = []
    for r in resolved:
        depth = 1
        while depth < len(r.parts) and any(o != r and o.parts[-depth:] == r.parts[-depth:] for o in resolved):
            depth += 1
        names.append("/".join(r.parts[-depth:]))
    return names


def _scan_site(name: str, folder: Path, scan_kwargs: dict) -> Manifest:
    try:
        manifest = scan(folder, **scan_kwargs)
    except DatasetError as exc:
        raise DatasetError(f"site {name}: {exc}") from None
    manifest.frame["site"] = name
    _check_site(name, manifest, folder)
    return manifest


def _check_site(name: str, manifest: Manifest, where) -> None:
    if manifest.frame.empty:
        raise DatasetError(f"site {name} ({where}): no usable page; add its pages or leave the site out")
    if len(manifest.classes) < 2:
        only = ", ".join(manifest.classes)
        raise DatasetError(
            f"site {name} ({where}): {len(manifest.frame)} page(s), all {only}; a site needs pages of at "
            "least two classes to train or be scored on: add pages of another class or leave the site out"
        )


def _mark_shared_pages(sites: dict[str, Manifest]) -> None:
    """The same bytes in two sites: an error across classes (as in one dataset), else a warning,
    since such a page leaks from training to test when one of its sites is left out."""
    pages = pd.concat([m.frame[["sha256", "label", "site", "path"]] for m in sites.values()], ignore_index=True)
    shared = pages[pages.duplicated("sha256", keep=False)]
    for sha, group in shared.groupby("sha256"):
        if group["label"].nunique() > 1:
            listed = " and ".join(f"{p} ({s}, {c})" for p, s, c in zip(group["path"], group["site"], group["label"]))
            raise DatasetError(f"the same image is filed under two classes: {listed}; keep it in the one right class")
    for name, manifest in sites.items():
        mine = shared[shared["site"] == name]
        others = shared[(shared["site"] != name) & shared["sha256"].isin(mine["sha256"])]
        if len(mine) and len(others):
            manifest.warnings.append(
                f"site {name}: {mine['sha256'].nunique()} page(s) have the same bytes as pages of "
                f"{', '.join(sorted(set(others['site'])))}, e.g. {mine['path'].iloc[0]}; keep each page in one site, "
                "or leave-one-site-out tests on pages it trained on"
            )


def _read_site_csv(path: Path) -> Iterable[tuple[int, tuple[str, str]]]:
    """(line number, (path, site)) for each row of a site CSV."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; give a CSV with columns path,site")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable CSV ({str(exc).splitlines()[0]}); expected columns path,site") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if not {"path", "site"} <= set(table.columns):
        raise DatasetError(f"{path}: columns are {', '.join(table.columns) or 'none'}; expected path,site "
                           "(a header row, then one row per page)")
    rows = []
    for line, (page, site) in enumerate(zip(table["path"].str.strip(), table["site"].str.strip()), start=2):
        if not page or not site:
            raise DatasetError(f"{path}:{line}: empty {'path' if not page else 'site'}; every row needs both")
        rows.append((line, (page, site)))
    if not rows:
        raise DatasetError(f"{path}: no rows; add one `path,site` row per page")
    return rows


def _key(path) -> str:
    """A path's comparable form: absolute, normalised, symlinks resolved."""
    return str(Path(path).resolve())

