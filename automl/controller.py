"""A search, start to finish: data -> features -> engines -> holdout -> registry, under one budget.

The budget starts before the data scan and ends after the registration; engines get slices of
what is left after a reserve for the final steps (:mod:`automl.budget`), and every trial becomes
a nested MLflow run as it finishes. The engines' best candidates, and a greedy ensemble of them
(:mod:`automl.ensemble`), are ranked on the spec's metric over pages of the training part they
were not fitted on (out-of-fold or validation probabilities); the best is offered to the
registry. All are scored on the same holdout, which no engine ever sees: it reports, and it
decides champion or challenger, but never picks among candidates.
"""
from __future__ import annotations

import concurrent.futures
import importlib
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from automl import library_log
from automl.allocation import run_engines
from automl.budget import Budget, format_duration
from automl.core_use import CoreUse
from automl.engines import make_engine
from automl.engines.base import Candidate, Trial, TrainingData
from automl.evaluate import Evaluation, evaluate, plot_confusion, plot_roc
from automl.experiment import EngineSpec, ExperimentSpec
from automl.progress import SearchProgress
from automl.tracking import SearchTracker, git_commit, resolve_tracking_uri

__all__ = ["ScoredCandidate", "SearchResult", "run_search", "make_engine"]


@dataclass
class ScoredCandidate:
    candidate: Candidate
    evaluation: Evaluation
    calibration: dict = field(default_factory=dict)  # automl.calibration.calibrate_model's facts

    cv_score: float = math.nan  # the spec's metric on the candidate's out-of-fold (or validation) pages
    cv_source: str = ""
    refit: str = ""  # once chosen: whether it was refitted on every page (automl.refit), or why not

    def selection_key(self) -> tuple[float, float]:
        """How the search picks its best: cross-validated score, then the engine's own."""
        cv = self.cv_score if math.isfinite(self.cv_score) else -math.inf
        own = self.candidate.validation_score
        return (cv, own if math.isfinite(own) else -math.inf)


@dataclass
class SearchResult:
    run_id: str
    tracking_uri: str
    spec: ExperimentSpec
    data_root: Path
    data_hash: str
    trials: int
    candidates: list[ScoredCandidate]
    best: ScoredCandidate | None
    promotion: object | None  # automl.registry.Promotion
    elapsed: float
    engine_seconds: float
    budget_seconds: float
    skipped: list = field(default_factory=list)
    explanations: list = field(default_factory=list)  # summary lines of the holdout pages explained
    engine_lines: list = field(default_factory=list)  # what each engine did with its time (EngineTurns.lines)
    engine_window: tuple = (math.nan, math.nan)  # monotonic start and end of the engines' turns
    core_use: object | None = None  # automl.core_use.CoreUse of the whole search
    library_log: Path | None = None  # this command's library messages, when there were any

    @property
    def overhead_share(self) -> float:
        """Share of the wall time spent outside engine slices (scan, features, scoring, registry)."""
        return 1.0 - self.engine_seconds / self.elapsed if self.elapsed > 0 else 0.0


def run_search(
    spec: ExperimentSpec,
    budget_seconds: float,
    *,
    data: str | Path | None = None,
    seed: int = 0,
    tracking_uri: str | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
    engine_factory: Callable[[EngineSpec], object] = make_engine,
    register: bool = True,
    manifest=None,
    run_name: str | None = None,
    run_tags: dict[str, str] | None = None,
    documents: dict[str, dict] | None = None,
) -> SearchResult:
    """Run one search; raises DatasetError for unusable data before anything is logged.

    ``register=False`` scores the candidates on the holdout but registers and explains nothing
    (``smartecg worker`` adds trials to a shared study this way). ``manifest``: the scan of
    ``data`` when the caller has one already. ``run_name``, ``run_tags`` go on the search's run (a
    ``smartecg.kind`` among them replaces "search"), ``documents`` into it as JSON files.
    """
    from features.cache import default_cache_dir
    from features.dataset import assign_splits, scan
    from features.synthetic import demo_dataset

    budget = Budget(budget_seconds, reserve=min(spec.reserve_seconds, 0.3 * budget_seconds))
    core_use = CoreUse().start()
    try:  # a dataset that cannot be used stops the search here: the sampler must not outlive it
        shown = SearchProgress(budget, spec.metric, stream=stream, enabled=progress)
        # Opening MLflow (imports, the SQLite store, ending runs of dead searches) takes a second or
        # two: it happens in a thread while the data is scanned and its features are read.
        uri = resolve_tracking_uri(tracking_uri)
        opener = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smartecg-tracking")
        tracker_ready = opener.submit(_open_tracker, uri, spec.name)
        opener.shutdown(wait=False)
        shown.set_stage("data")  # SearchProgress also times each stage, for the run's seconds_* metrics
        root = Path(data) if data is not None else demo_dataset(progress=False)
        manifest = manifest if manifest is not None else scan(root, progress=False)
        skipped = {str(s.path): s.reason for s in manifest.skipped}
        for path, reason in skipped.items():
            shown.message(f"skipped {path}: {reason}")
        frame = assign_splits(manifest, fractions=spec.split_fractions, seed=seed)
        shown.set_stage("features")
        vectors, frame, unreadable = _features(frame, spec, shown, cache_dir=default_cache_dir())
        skipped.update(unreadable)
        holdout_groups = _holdout_groups(frame, cache_dir=default_cache_dir())

        data_hash = manifest.data_hash()
        name = run_name or f"search-{format_duration(budget_seconds)}"
        search_run = _LazySearchRun(tracker_ready, name=name, params={
            "budget_seconds": budget_seconds, "seed": seed, "data": str(root), "metric": spec.metric,
            "features": ",".join(spec.features), "engines": ",".join(e.name for e in spec.engines),
            "spec": spec.source, "n_images": len(frame), "n_skipped": len(skipped)},
            tags={"smartecg.data_hash": data_hash, "smartecg.git_commit": git_commit(),
                  "smartecg.budget": format_duration(budget_seconds), **(run_tags or {})},
            documents={**({"skipped_files.json": skipped} if skipped else {}), **(documents or {})})
    except BaseException:
        core_use.stop()
        raise
    workdir = Path(tempfile.mkdtemp(prefix="smartecg-search-"))
    status = "FAILED"
    try:
        result = _search(_Run(spec, budget, shown, search_run, workdir, seed, engine_factory, register, core_use),
                         _Pages(root, manifest, frame, vectors, holdout_groups, data_hash))
        result.core_use = core_use
        result.skipped = sorted(skipped)
        library = library_log.current()
        result.library_log = library.path if library is not None and library.has_content() else None
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        core_use.stop()
        _log_core_use(search_run, core_use)
        _log_library_log(search_run, workdir)
        search_run.finish(status)
        shown.close()
        shutil.rmtree(workdir, ignore_errors=True)


class _LazySearchRun:
    """The search's parent run, started when first needed: by then MLflow has opened meanwhile.

    The first trial of an engine takes seconds to arrive (worker start-up), so engines start
    before the tracker is ready and nothing waits for it in practice.
    """

    def __init__(self, tracker_ready: concurrent.futures.Future, *, name: str, params: dict, tags: dict,
                 documents: dict[str, dict]) -> None:
        self._ready, self._name, self._params, self._tags = tracker_ready, name, params, tags
        self._documents = documents
        self._tracker: SearchTracker | None = None
        self.engine_window: tuple[float, float] | None = None

    @property
    def tracker(self) -> SearchTracker:
        if self._tracker is None:
            tracker = self._ready.result()
            tracker.start_search(self._name, self._params, self._tags)
            self._tracker = tracker
            for name, document in self._documents.items():
                tracker.log_dict(tracker.parent_run_id, document, name)
        return self._tracker

    def finish(self, status: str) -> None:
        """End the run with ``status``; a search that failed before its run started still leaves one."""
        try:
            tracker = self.tracker
        except Exception:  # MLflow itself could not be opened: the original error is the one to see
            return
        tracker.finish_search(status)


def _open_tracker(uri: str, experiment: str) -> SearchTracker:
    tracker = SearchTracker(uri, experiment)
    tracker.end_orphaned_runs()
    importlib.import_module("matplotlib.pyplot")  # for the holdout plots, later; also slow to import
    return tracker


@dataclass
class _Run:
    """How one search runs: its spec, clock, live line, MLflow run, scratch folder and engines."""

    spec: ExperimentSpec
    budget: Budget
    shown: SearchProgress
    search_run: _LazySearchRun
    workdir: Path
    seed: int
    engine_factory: Callable[[EngineSpec], object]
    register: bool
    core_use: CoreUse | None = None


@dataclass
class _Pages:
    """The search's data: scanned, split (``frame``), read (``vectors``) and surveyed (holdout groups)."""

    root: Path
    manifest: object
    frame: object  # pandas.DataFrame: path, label, sha256, split
    vectors: np.ndarray
    holdout_groups: dict[str, list[str]]
    data_hash: str


def _search(run: _Run, pages: _Pages) -> SearchResult:
    from features.handcrafted import PageFeatures

    spec, budget, shown, search_run, workdir = run.spec, run.budget, run.shown, run.search_run, run.workdir
    seed = run.seed
    manifest, frame, vectors, holdout_groups, data_hash = (pages.manifest, pages.frame, pages.vectors,
                                                           pages.holdout_groups, pages.data_hash)

    classes = [c for c in manifest.classes if c in set(frame["label"])]
    learn = frame["split"] != "holdout"
    holdout = frame[~learn]
    model_features = PageFeatures(sets=tuple(spec.features), n_jobs=1, cache_dir=None, progress=False)
    training = TrainingData(paths=[str(p) for p in frame.loc[learn, "path"]], X=vectors[learn.to_numpy()],
                            y=frame.loc[learn, "label"].to_numpy(dtype=object), classes=classes,
                            features=model_features, metric=spec.metric, seed=seed, workdir=workdir,
                            experiment=spec.name)
    trials = 0

    def log_trial(trial: Trial) -> str:
        nonlocal trials
        run_id = search_run.tracker.log_trial(trial, spec.metric)  # first: a failed log is tried again
        trials += 1
        shown.trial(trial.score, trial.status == "ok")
        return run_id

    engines_started = time.monotonic()
    candidates, turns = run_engines(spec, budget, training, log_trial, shown, engine_factory=run.engine_factory,
                                    core_use=run.core_use)
    search_run.engine_window = (engines_started, time.monotonic())  # for the core-use share of the engines
    tracker = search_run.tracker
    _log_turns(tracker, turns)
    candidates += _ensemble(candidates, training, log_trial, tracker, shown)

    shown.set_stage("holdout")
    run_id = tracker.parent_run_id
    X_holdout = vectors[(~learn).to_numpy()]
    y_holdout = holdout["label"].to_numpy(dtype=object)
    scored = []
    holdout_paths = [str(p) for p in holdout["path"]]
    for candidate in candidates:
        scored.append(_score(candidate, spec, tracker, y_holdout, classes, holdout_groups,
                             _holdout_proba(candidate, model_features, X_holdout, holdout_paths)))
    # Chosen on cross-validated (out-of-fold or validation) scores over the training pages; the
    # holdout is for the report and for champion/challenger, never for picking among candidates.
    best = max(scored, key=ScoredCandidate.selection_key) if scored else None
    tracker.log_metrics(run_id, {"trials": trials, "candidates": len(scored)})
    if best is not None:
        tracker.set_tags(run_id, {"smartecg.selected": f"{best.candidate.engine}: {best.candidate.description}"[:5000],
                                  "smartecg.selected_on": best.cv_source})

    promotion, explanations = None, []
    if best is None:
        shown.message("no candidate finished within the budget; nothing registered (give a larger --budget)")
    else:
        tracker.log_metrics(run_id, {**best.evaluation.metrics, **best.evaluation.group_metrics()},
                            prefix="holdout_")
    if best is not None and run.register:
        _log_plots(tracker, run_id, best, workdir)
        shown.set_stage("gate")
        _fit_gate(best.candidate.model, training.paths, holdout_paths, tracker, shown)
        if spec.refit_all_pages:
            shown.set_stage("refit")
            _refit_on_every_page(best, model_features, vectors, frame["label"], classes, tracker, shown)
        shown.set_stage("registry")
        from automl.audit import load_audits
        from automl.registry import Holdout, promote

        promotion = promote(tracker, spec, best, holdout=Holdout.of(holdout_paths, y_holdout, holdout["sha256"]),
                            data_hash=data_hash, data_counts=_split_counts(frame), audits=load_audits(data_hash))
        if spec.explain_pages:
            shown.set_stage("explain")
            explanations = _log_explanations(tracker, best, holdout, spec, budget, shown, workdir)
    shown.set_stage("done")
    elapsed = budget.elapsed()
    tracker.log_metrics(run_id, {"elapsed_seconds": elapsed, "engine_seconds": budget.engine_seconds,
                                 **{f"seconds_{stage}": t for stage, t in shown.stage_seconds.items()}})
    return SearchResult(run_id=run_id, tracking_uri=tracker.tracking_uri, spec=spec, data_root=pages.root,
                        data_hash=data_hash, trials=trials, candidates=scored, best=best, promotion=promotion,
                        elapsed=elapsed, engine_seconds=budget.engine_seconds, budget_seconds=budget.seconds,
                        explanations=explanations, engine_lines=turns.lines(),
                        engine_window=search_run.engine_window)


def _log_core_use(search_run, core_use: CoreUse) -> None:
    """The share of the machine's cores the search kept busy, whole and during the engines' turns."""
    try:
        tracker = search_run.tracker
    except Exception:  # MLflow never opened: the search's own error is the one to see
        return
    metrics = {"core_use_share": core_use.share()}
    if search_run.engine_window is not None:
        metrics["core_use_share_engines"] = core_use.share(*search_run.engine_window)
    tracker.log_metrics(tracker.parent_run_id, {k: v for k, v in metrics.items() if math.isfinite(v)})


def _log_library_log(search_run, workdir: Path) -> None:
    """This command's library log (TensorFlow, MLflow... and the engines' workers) as the run's
    logs/library.log, whether the search succeeded or not."""
    library = library_log.current()
    if library is None or not library.has_content():
        return
    try:
        tracker = search_run.tracker
        copy = workdir / "library.log"  # the run's name for it; the local file is named per command
        shutil.copyfile(library.path, copy)
        tracker.log_artifact(tracker.parent_run_id, copy, "logs")
    except Exception:  # MLflow never opened, or the upload failed: the search's own result is the one to see
        logging.getLogger(__name__).warning("the library log %s could not be added to the search's run",
                                            library.path, exc_info=True)


def _log_turns(tracker: SearchTracker, turns) -> None:
    """Each engine's calls, errors and the unused time, on the search run (metrics, tags, engines.json)."""
    run_id = tracker.parent_run_id
    tracker.log_metrics(run_id, turns.metrics())
    tracker.log_dict(run_id, turns.document(), "engines.json")
    tags = {f"smartecg.engine_error.{name}": error for name, error in turns.errors.items()}
    tags.update({f"smartecg.yielded.{name}": d["said"][:5000] for name, d in turns.yielded.items()})
    if turns.unused_reason:
        tags["smartecg.unused_time"] = f"{turns.unused_seconds:.0f} s: {turns.unused_reason}"[:5000]
    if tags:
        tracker.set_tags(run_id, tags)


def _features(frame, spec: ExperimentSpec, shown: SearchProgress, cache_dir):
    """Feature vectors of every usable page, the frame of those pages, and {path: reason} of the rest.

    A page that decodes but cannot be used (too small, say), or that cannot be an ECG page from its
    ink alone (blank, mostly ink), is reported and left out.
    """
    from features.dataset import SPLITS, DatasetError
    from features.handcrafted import PageFeatures
    from features.imageio import ImageReadError

    extractor = PageFeatures(sets=tuple(spec.features), n_jobs=-1, cache_dir=cache_dir, progress=False)
    unreadable = _not_pages(frame["path"].astype(str).tolist())
    for path, reason in unreadable.items():  # a blank page in a class folder is no example of that class
        shown.message(f"skipped {path}: {reason}")
    frame = frame[~frame["path"].astype(str).isin(unreadable)]
    while True:
        missing = [s for s in SPLITS if not (frame["split"] == s).any()] if unreadable else []
        if missing:
            raise DatasetError(f"no usable page left in the {', '.join(missing)} split")
        try:
            return extractor.transform([str(p) for p in frame["path"]]), frame, unreadable
        except ImageReadError as exc:  # reported, dropped, and the rest goes on (cached rows are reused)
            shown.message(f"skipped {exc}")
            unreadable[exc.name] = f"{exc.reason}; {exc.hint}"
            frame = frame[frame["path"].astype(str) != exc.name]


def _fit_gate(model, training_paths: list[str], holdout_paths: list[str], tracker: SearchTracker,
              shown: SearchProgress) -> None:
    """Fit the page gate (:mod:`features.gate`) on the training pages and store it in the model;
    log what it makes of the holdout pages, which it never saw (any refusal there is a warning)."""
    from features.gate import REFUSED, TURNED, PageGate

    model.gate = PageGate().fit(training_paths)
    checks = model.check_pages(holdout_paths)
    refused = [c for c in checks if c.status == REFUSED]
    for check in refused:
        shown.message(f"the page gate refuses holdout page {check.name}: {check.reason}")
    tracker.log_metrics(tracker.parent_run_id, {
        "gate_training_pages": model.gate.n_pages_, "holdout_gate_refused": len(refused),
        "holdout_gate_turned": sum(c.status == TURNED for c in checks),
        "holdout_gate_unlike_training": sum(c.unlike_training for c in checks)})


def _not_pages(paths: list[str]) -> dict[str, str]:
    """{path: reason} of the pages that cannot be ECG pages from their ink alone (blank, mostly ink);
    undecodable ones are left to the feature reader, which names them."""
    from joblib import Parallel, delayed

    from features.gate import ink_problem

    def problem(path: str) -> str | None:
        try:
            found = ink_problem(path)
        except ImageReadError:
            return None
        return f"{found}; not used for training or scoring" if found else None

    from features.imageio import ImageReadError

    found = Parallel(n_jobs=-1, prefer="threads")(delayed(problem)(path) for path in paths)
    return {path: reason for path, reason in zip(paths, found) if reason}


def _holdout_proba(candidate, search_features, X_holdout, holdout_paths):
    """A candidate's uncalibrated holdout probabilities: from the search's feature vectors when it
    reads the same features (TPOT), else from the pages themselves (deep engines read their own
    tensors), made on every core through the shared cache (the model's own transformer has neither)."""
    from sklearn.base import clone

    from features.cache import default_cache_dir

    if candidate.model.reads(search_features):
        return candidate.model.uncalibrated_proba(X_holdout)
    shared = clone(candidate.model.features).set_params(cache_dir=default_cache_dir(), n_jobs=-1, progress=False)
    return candidate.model.uncalibrated_proba(shared.transform(holdout_paths))


def _score(candidate: Candidate, spec: ExperimentSpec, tracker: SearchTracker, y_holdout, classes, groups,
           raw_proba) -> ScoredCandidate:
    """Calibrate the candidate on its own calibration pages, then score it on the holdout.

    The holdout scores are the calibrated model's (the one that would be registered); the
    uncalibrated model's ECE on the same pages is logged beside them.
    """
    from automl.calibration import calibrate_model, expected_calibration_error

    model = candidate.model
    model.uncertain_below = spec.uncertain_below
    facts = calibrate_model(model, candidate.calibration, spec.calibration)
    proba = model.calibrator.transform(raw_proba) if model.calibrator is not None else raw_proba
    evaluation = evaluate(y_holdout, proba, classes, groups)
    facts["holdout_ece_uncalibrated"] = expected_calibration_error(
        np.array([classes.index(c) for c in y_holdout], dtype=int), raw_proba)
    cv_score, cv_source = _cross_validated(candidate, spec.metric)
    if candidate.run_id:
        tracker.log_metrics(candidate.run_id, {f"cv_{spec.metric}": cv_score})
        tracker.log_metrics(candidate.run_id, {**evaluation.metrics, **evaluation.group_metrics()}, prefix="holdout_")
        tracker.log_metrics(candidate.run_id, {k: v for k, v in facts.items() if isinstance(v, float)})
        tracker.set_tags(candidate.run_id, {"smartecg.calibration": facts["calibration"]})
    return ScoredCandidate(candidate, evaluation, facts, cv_score, cv_source)


def _cross_validated(candidate: Candidate, metric: str) -> tuple[float, str]:
    """The metric on the pages the candidate was not fitted on (its calibration set), else the
    engine's own validation score."""
    from automl.evaluate import score_probabilities

    found = candidate.calibration
    if found is not None and len(found.y):
        return score_probabilities(metric, found.y, found.proba), found.source
    return float(candidate.validation_score), "the engine's validation score"


def _ensemble(candidates: list[Candidate], training: TrainingData, log_trial, tracker: SearchTracker,
              shown: SearchProgress) -> list[Candidate]:
    """Greedy ensemble selection over the candidates' out-of-fold probabilities, as one more
    candidate (logged as a trial with its members and weights); none when it keeps one member."""
    from automl.ensemble import build_ensemble

    built = build_ensemble(candidates, training)
    if built is None:
        return []
    candidate, selection, members = built
    candidate.run_id = log_trial(Trial("ensemble", 0, candidate.description, candidate.params, selection.score, 0.0,
                                       "ok", extra={"members": len(members)}))
    if candidate.run_id:
        tracker.log_dict(candidate.run_id, {"members": [{"engine": c.engine, "description": c.description,
                                                         "weight": w, "run_id": c.run_id} for c, w in members],
                                            "scores_by_round": selection.history}, "ensemble.json")
    shown.message(f"ensemble: {len(members)} members, cross-validated {training.metric} {selection.score:.3f}")
    return [candidate]


def _refit_on_every_page(best: ScoredCandidate, search_features, vectors, labels, classes, tracker: SearchTracker,
                         shown: SearchProgress) -> None:
    """The chosen model fitted again on every page, holdout included (:mod:`automl.refit`), when it
    reads the search's features; said either way.

    It runs even when the holdout scoring used up the budget's reserve, as TPOT always refits its
    best: one more fit of a pipeline (or of each ensemble member) over page features takes
    seconds, and skipping it would register a model fitted on 15% fewer pages.
    """
    from automl.refit import refit_on_every_page

    model = best.candidate.model
    if not model.reads(search_features):
        reason = "not refitted: it reads its own inputs, not the search's feature vectors"
    else:
        y = np.array([classes.index(label) for label in labels], dtype=np.int64)
        done = refit_on_every_page(model, vectors, y)
        reason = done.reason
        if done.model is not None:
            best.candidate.model = done.model
    best.refit = reason
    tracker.set_tags(tracker.parent_run_id, {"smartecg.refit": reason})
    shown.message(f"best model {reason}")


def _split_counts(frame) -> dict[str, dict[str, int]]:
    """Pages per class in each split, for the model card."""
    table = frame.groupby(["label", "split"]).size().unstack(fill_value=0)
    return {label: {split: int(n) for split, n in row.items()} for label, row in table.iterrows()}


def _log_explanations(tracker: SearchTracker, best: ScoredCandidate, holdout, spec: ExperimentSpec, budget: Budget,
                      shown: SearchProgress, workdir: Path) -> list[str]:
    """Explain a few holdout pages per class with the best model and log overlays and summaries.

    A model refitted on every page has seen these pages: they are explained with its twin fitted
    without them, the model the holdout figures are of.

    Pages are explained in turn while the budget lasts (each takes about as long as the last one);
    a page that cannot be explained is named and skipped. Returns one summary line per page.
    """
    import json

    from automl.explain import explain
    from automl.overlay import write_overlay

    folder = workdir / "explanations"
    folder.mkdir(parents=True, exist_ok=True)
    picks = holdout.sort_values("path").groupby("label", sort=True).head(spec.explain_pages)
    lines, records, last = [], [], 0.0
    for path, label in zip(picks["path"].astype(str), picks["label"]):
        if budget.remaining() < 1.5 * last:
            shown.message(f"explanations: {len(records)} of {len(picks)} holdout pages explained before the "
                          "budget ran out")
            break
        started = budget.elapsed()
        try:
            found = explain(best.candidate.model.without_holdout, path, lime_samples=spec.lime_samples, seed=0)
        except Exception as exc:  # an explanation is a view of the result; it must not cost the search
            shown.message(f"explanations: {path} could not be explained ({type(exc).__name__}: {exc})")
            continue
        stem = f"{label}-{Path(path).stem}"
        write_overlay(found, path, folder / f"{stem}.{found.method}.png")
        records.append({"true_class": label, "file": Path(path).name, **found.to_dict()})
        lines.append(f"{Path(path).name} (true {label}): {found.summary}")
        last = budget.elapsed() - started
    if records:
        (folder / "explanations.json").write_text(json.dumps(records, indent=2))
        for run in filter(None, (tracker.parent_run_id, best.candidate.run_id)):
            tracker.client.log_artifacts(run, str(folder), "explanations")
    return lines


def _holdout_groups(frame, cache_dir) -> dict[str, list[str]]:
    """Layout and page-size bucket of each holdout page, for metrics per group (never a model input)."""
    from features.survey import survey_pages

    holdout = frame[frame["split"] == "holdout"]
    survey = survey_pages([str(p) for p in holdout["path"]], n_jobs=-1, cache_dir=cache_dir, progress=False)
    return {"layout": survey["layout"].tolist(), "size": survey["size_bucket"].tolist()}


def _log_plots(tracker: SearchTracker, run_id: str, best: ScoredCandidate, workdir: Path) -> None:
    plots = workdir / "plots"
    for path in (plot_confusion(best.evaluation, plots / "holdout_confusion.png"),
                 plot_roc(best.evaluation, plots / "holdout_roc.png")):
        tracker.log_artifact(run_id, path, "holdout")
        if best.candidate.run_id:
            tracker.log_artifact(best.candidate.run_id, path, "holdout")

