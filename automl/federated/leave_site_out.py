"""Leave-one-site-out: how a model trained at some hospitals does at one it has never seen.

For every site S: a federated head is trained (:func:`run_in_process`) on the other sites, each
learning on its train pages and checking on its validation pages, and is tested on EVERY page of
S; the same head, same rounds and epochs, trained pooled (one client holding all those pages) is
tested on S too. Beside them, the reference "every site, in-distribution": trained (pooled and federated) on all sites' train
pages and scored on all sites' holdout pages, the figure a random split would give.

The gap between the reference and the per-site figures is what moving to a new hospital costs;
the gap between federated and pooled is what keeping the pages at their sites costs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from automl.bootstrap import bootstrap_scores
from automl.federated.head import HeadSpec, head_proba
from automl.federated.protocol import (MIN_SITE_PAGES, Coordinator, FederationResult, SiteClient, SiteData,
                                       run_in_process)
from automl.federated.sites_data import SitePages, site_pages, site_split_file, to_site_data
from features._progress import progress_disabled
from features.dataset import CLASSES, Manifest

__all__ = ["LeaveSiteOut", "SiteRow", "leave_site_out", "calibrated"]

_MIN_CLASS_PAGES = 3  # a class needs one page each in train, validation and holdout


@dataclass
class SiteRow:
    """One left-out site: its pages, and how the federated and pooled heads did on them."""

    site: str
    pages: int
    classes: list[str]  # present in the site; macro-F1 is over these
    unseen_classes: list[str]  # in the site but in no training site's learning pages
    training_sites: list[str]  # the clients of the federated run (after folding)
    training_pages: int  # learning + checking pages of the other sites
    federated: dict | None = None  # bootstrap_scores of the federated head, or None when skipped
    pooled: dict | None = None
    temperature: dict = field(default_factory=dict)  # {"federated": T, "pooled": T}
    notes: list[str] = field(default_factory=list)
    trained_on: frozenset = field(default_factory=frozenset, repr=False)  # sha256 of every training page

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "trained_on"}
        return out


@dataclass
class LeaveSiteOut:
    rows: list[SiteRow]
    reference: dict  # every site in-distribution: pages, scores (pooled), federated_scores, or {"skipped": reason}
    head: str  # e.g. "linear, 10 rounds x 5 epochs"
    features: list[str]
    seed: int
    approximated: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sites": [r.to_dict() for r in self.rows], "pooled_in_distribution": self.reference,
                "head": self.head, "features": self.features, "seed": self.seed,
                "sites_approximated": self.approximated, "notes": list(self.notes)}

    def table(self) -> str:
        """A markdown table: one row per left-out site, federated and pooled side by side, then the reference."""
        lines = ["| left-out site | pages | classes | federated macro-F1 [95% CI] | federated acc | "
                 "pooled macro-F1 [95% CI] | pooled acc | notes |",
                 "|---|---:|---|---|---:|---|---:|---|"]
        for r in self.rows:
            classes = ", ".join(c + ("*" if c in r.unseen_classes else "") for c in r.classes)
            site = r.site.replace("|", "\\|")  # approximated sites are named layout|size
            lines.append(f"| {site} | {r.pages} | {classes} | {_f1_cell(r.federated)} | {_acc_cell(r.federated)} | "
                         f"{_f1_cell(r.pooled)} | {_acc_cell(r.pooled)} | {'; '.join(r.notes)} |")
        ref = self.reference
        note = ref.get("skipped", f"trained on every site's train pages (federated: one client per site), scored "
                                  f"on their {ref.get('pages', 0)} holdout pages")
        lines.append(f"| every site, in-distribution | {ref.get('pages', '-')} | | "
                     f"{_f1_cell(ref.get('federated_scores'))} | {_acc_cell(ref.get('federated_scores'))} | "
                     f"{_f1_cell(ref.get('scores'))} | {_acc_cell(ref.get('scores'))} | {note} |")
        footer = ["", f"Head: {self.head}; features: {', '.join(self.features)}; seed {self.seed}. "
                      "Macro-F1 over the classes the left-out site has; * a class no training site has."]
        if self.approximated:
            footer.append("Sites are APPROXIMATED by page family (layout and page size, from the data survey), "
                          "not named hospitals.")
        footer += self.notes
        return "\n".join(lines + footer)


def calibrated(result: FederationResult, X: np.ndarray) -> np.ndarray:
    """The head's class probabilities with its calibration temperature, as the registered model gives them."""
    return result.calibrator().transform(head_proba(result.weights, result.scaling.apply(X)))


def leave_site_out(sites: dict[str, Manifest], *, features, spec: HeadSpec, rounds: int, seed: int = 0,
                   approximated: bool = False, resamples: int = 2000, progress: bool | None = None) -> LeaveSiteOut:
    """Every site left out in turn (see the module's docstring).

    ``features`` turns page paths into rows (``PageFeatures``); every page's row is computed once.
    ``approximated`` says the sites stand in for hospitals (the table says so). A training site
    with fewer than :data:`MIN_SITE_PAGES` learning pages joins the largest other training site's
    client (noted); a page with the same bytes as a page of the left-out site is left out of
    training (noted).
    """
    if len(sites) < 2:
        raise ValueError(f"leave-one-site-out needs at least two sites, got {len(sites)}")
    classes = [c for c in CLASSES if any(c in set(m.frame["label"]) for m in sites.values())]
    notes: list[str] = []
    split = {}
    for name, manifest in sites.items():
        split[name], note = _split_site(name, manifest, sites, seed)
        notes += [note] if note else []
    rows_of = _Rows(sorted({str(p) for m in sites.values() for p in m.frame["path"]}), features)
    steps = tqdm(total=2 * len(sites) + 1, desc="leave-site-out", unit="run",
                 disable=progress_disabled(progress, 2 * len(sites) + 1, threshold=0))
    rows = []
    for name, manifest in sites.items():
        rows.append(_leave_out(name, manifest, {n: p for n, p in split.items() if n != name}, rows_of, classes,
                               spec, rounds, seed, resamples, steps))
    reference = _in_distribution(split, rows_of, classes, spec, rounds, seed, resamples)
    steps.update(1)
    steps.close()
    head = f"{spec.kind}, {rounds} rounds x {spec.epochs} epochs" + (f", FedProx mu {spec.mu:g}" if spec.mu else "")
    return LeaveSiteOut(rows, reference, head, list(getattr(features, "sets", [])), seed, approximated, notes)


class _Rows:
    """Feature rows of every page, computed once, looked up by path (what to_site_data asks of features)."""

    def __init__(self, paths: list[str], features) -> None:
        matrix = np.asarray(features.transform(paths), dtype=float)
        self._row = {p: i for i, p in enumerate(paths)}
        self._matrix = matrix

    def transform(self, paths) -> np.ndarray:
        return self._matrix[[self._row[str(p)] for p in paths]].reshape(len(paths), self._matrix.shape[1])


def _split_site(name: str, manifest: Manifest, sites: dict[str, Manifest], seed: int) -> tuple[SitePages, str]:
    """The site's saved train/validation/holdout split; a class with too few pages to split trains only."""
    counts = manifest.frame["label"].value_counts()
    few = sorted(c for c, n in counts.items() if n < _MIN_CLASS_PAGES)
    splittable = manifest.frame[~manifest.frame["label"].isin(few)]
    parts = [manifest.frame[manifest.frame["label"].isin(few)].assign(split="train")]
    if len(splittable):
        pages = site_pages(name, replace(manifest, frame=splittable.reset_index(drop=True)), seed=seed,
                           split_file=site_split_file(name, manifest, sites))
        parts.append(pages.frame)
    frame = pd.concat(parts, ignore_index=True)
    note = (f"site {name}: {', '.join(f'{c} ({counts[c]})' for c in few)} too few to split, "
            "train pages only (never in a holdout)") if few else ""
    return SitePages(name, frame), note


def _leave_out(name, manifest, others: dict[str, SitePages], rows_of, classes, spec, rounds, seed, resamples,
               steps) -> SiteRow:
    test_sha = set(manifest.frame["sha256"])
    notes = []
    kept = {}
    for other, pages in others.items():
        usable = pages.frame[pages.frame["split"].isin(["train", "validation"])]
        shared = usable["sha256"].isin(test_sha)
        if shared.any():
            notes.append(f"{int(shared.sum())} page(s) of {other} have the same bytes as pages of {name}: "
                         "left out of training")
        kept[other] = SitePages(other, usable[~shared].reset_index(drop=True))
    data = {other: to_site_data(pages, rows_of, classes) for other, pages in kept.items()}
    data, fold_notes = _fold_small(data)
    notes += fold_notes
    learned = {classes[i] for d in data.values() for i in d.y_learn}
    present = [c for c in classes if c in set(manifest.frame["label"])]
    row = SiteRow(name, len(manifest.frame), present, [c for c in present if c not in learned], list(data),
                  sum(len(p.frame) for p in kept.values()), notes=notes,
                  trained_on=frozenset(s for p in kept.values() for s in p.frame["sha256"]))
    if row.unseen_classes:
        notes.append(f"no training site has {', '.join(row.unseen_classes)}")
    X_test = rows_of.transform(list(manifest.frame["path"]))
    truth = manifest.frame["label"].to_numpy(dtype=object)
    runs = {"federated": list(data.values()), "pooled": [_pooled(list(data.values()))]} if data else {}
    for arm in ("federated", "pooled"):
        try:
            if not runs:
                raise ValueError("no other site has pages to learn from")
            clients = [SiteClient(d, len(classes), spec) for d in runs[arm]]
            result = run_in_process(clients, Coordinator(classes, spec, rounds, seed=seed))
        except ValueError as exc:  # too few pages to take part
            notes.append(f"{arm} skipped: {exc}")
        else:
            proba = calibrated(result, X_test)
            predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
            setattr(row, arm, bootstrap_scores(truth, predicted, resamples=resamples, seed=seed))
            row.temperature[arm] = result.temperature
        steps.update(1)
    return row


def _fold_small(data: dict[str, SiteData]) -> tuple[dict[str, SiteData], list[str]]:
    """Training sites with too few learning pages to be a client join the largest site's client."""
    small = [n for n, d in data.items() if len(d.y_learn) < MIN_SITE_PAGES]
    big = [n for n in data if n not in small]
    if not small:
        return data, []
    home = max(big, key=lambda n: len(data[n].y_learn)) if big else small[0]
    moved = [n for n in small if n != home]
    merged = _pooled([data[home], *(data[n] for n in moved)], name=home)
    out = {n: d for n, d in data.items() if n not in moved}
    out[home] = merged
    notes = [f"{n} ({len(data[n].y_learn)} learning pages, under {MIN_SITE_PAGES}) trained in {home}'s client"
             for n in moved]
    return out, notes


def _pooled(parts: list[SiteData], name: str = "pooled") -> SiteData:
    """One client holding every part's pages: the pooled baseline."""
    n_features = parts[0].X_learn.shape[1]
    return SiteData(name,
                    np.concatenate([p.X_learn.reshape(-1, n_features) for p in parts]),
                    np.concatenate([p.y_learn for p in parts]).astype(int),
                    np.concatenate([p.X_check.reshape(-1, n_features) for p in parts]),
                    np.concatenate([p.y_check for p in parts]).astype(int))


def _in_distribution(split: dict[str, SitePages], rows_of, classes, spec, rounds, seed, resamples) -> dict:
    """The reference: one client with every site's train (and validation) pages, scored on their holdout pages."""
    every = pd.concat([p.frame.assign(site=n) for n, p in split.items()], ignore_index=True)
    holdout = every[every["split"] == "holdout"]
    # The same bytes at two sites may be a holdout page at one and a train page at the other.
    every = SitePages("pooled", every[(every["split"] == "holdout") | ~every["sha256"].isin(set(holdout["sha256"]))])
    if holdout.empty:
        return {"skipped": "no site has holdout pages"}
    X_holdout, truth = rows_of.transform(list(holdout["path"])), holdout["label"].to_numpy(dtype=object)
    learn = every.frame[every.frame["split"] != "holdout"]
    arms = {"scores": [to_site_data(every, rows_of, classes)],  # pooled, as before
            "federated_scores": list(_fold_small({n: to_site_data(SitePages(n, learn[learn["site"] == n]), rows_of,
                                                                  classes) for n in split})[0].values())}
    reference = {"pages": int(len(holdout))}
    for key, parts in arms.items():
        try:
            result = run_in_process([SiteClient(d, len(classes), spec) for d in parts],
                                    Coordinator(classes, spec, rounds, seed=seed))
        except ValueError as exc:
            reference.setdefault("skipped", str(exc))
            continue
        proba = calibrated(result, X_holdout)
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        reference[key] = bootstrap_scores(truth, predicted, resamples=resamples, seed=seed)
        reference["temperature" if key == "scores" else "federated_temperature"] = result.temperature
    return reference


def _f1_cell(scores: dict | None) -> str:
    if not scores:
        return "-"
    low, high = scores["macro_f1_ci"]
    return f"{scores['macro_f1']:.3f} [{low:.2f}-{high:.2f}]"


def _acc_cell(scores: dict | None) -> str:
    return f"{scores['accuracy']:.3f}" if scores else "-"
