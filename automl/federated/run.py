"""`smartecg federated`: a federation's sites, its MLflow runs, and the ECGModel it ends with.

A simulation reads every site's pages in this process, on the sites' behalf, and runs them as
Flower clients on loopback; the real thing runs ``smartecg federated server`` at the coordinating
centre and ``smartecg federated client`` at each site. Either way the server ends with the global
head (or, with ``model`` a network family, the global Keras network over page tensors:
:mod:`automl.federated.network`), which becomes an :class:`~automl.model.ECGModel` (the same page features in front,
temperature-calibrated from the sites' counts) and, when the server has labelled pages to compare
on, is registered and set against the champion like a search's best model.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable


from automl.federated.head import HeadSpec, as_pipeline
from automl.federated.network import NetworkCoordinator, NetworkSiteClient, NetworkSpec, network_model
from automl.federated.protocol import HEAD, Coordinator, FederationResult, RoundReport, SiteClient
from automl.federated.sites_data import SitePages, site_pages, site_split_file, to_site_data
from features.dataset import CLASSES, Manifest

__all__ = ["MODELS", "FederationSettings", "Outcome", "final_model", "join_federation", "serve_federation",
           "simulate_federation"]

log = logging.getLogger(__name__)
EXPERIMENT = "smartecg-federated"
MODELS = (HEAD, "cnn")  # what a federation trains: the head over feature rows, or a network over page tensors


@dataclass
class FederationSettings:
    rounds: int = 20
    head: HeadSpec = field(default_factory=HeadSpec)
    model: str = HEAD  # or a network family (MODELS): then ``network`` is what the sites train
    network: NetworkSpec = field(default_factory=NetworkSpec)
    features: tuple[str, ...] = ("signals", "trace")
    seed: int = 0
    budget_seconds: float | None = None
    experiment: str = EXPERIMENT
    registry_name: str = "smartecg"
    tracking_uri: str | None = None
    uncertain_below: float = 0.6
    jobs: int | None = None  # feature extraction processes at a site

    @property
    def trains_network(self) -> bool:
        return self.model != HEAD

    @property
    def model_kind(self) -> str:
        return self.network.kind if self.trains_network else self.head.kind

    @property
    def local_recipe(self) -> dict:
        spec = self.network if self.trains_network else self.head
        return {"local_epochs": spec.epochs, "learning_rate": spec.learning_rate}

    @property
    def inputs(self) -> str:
        """What the sites read, for people: the feature sets, or the network's tensors."""
        return self.network.features_id if self.trains_network else ",".join(self.features)

    @property
    def features_id(self) -> str:
        """The feature sets and their versions (or the network's tensors): a site reading other inputs than the
        server's refuses."""
        from features.handcrafted import FEATURE_SETS

        if self.trains_network:
            return self.network.features_id

        return ",".join(f"{name}:{FEATURE_SETS[name].version}" for name in self.features)

    @property
    def algorithm(self) -> str:
        if self.trains_network:
            return "FedAvg"  # no proximal term for networks (automl.federated.network)
        return f"FedProx(mu={self.head.mu:g})" if self.head.mu else "FedAvg"

    def page_features(self):
        """What a site reads of each page: feature rows for the head, tensors for a network (cached)."""
        from features.cache import default_cache_dir
        from features.handcrafted import PageFeatures

        # A bar on a terminal when a site reads many pages; none in logs and tests.
        if self.trains_network:
            return self.network.tensors(cache_dir=default_cache_dir(), n_jobs=self.jobs or -1, progress=None)
        return PageFeatures(sets=self.features, n_jobs=self.jobs or -1, cache_dir=default_cache_dir(), progress=None)


@dataclass
class Outcome:
    result: FederationResult
    model: object  # ECGModel
    run_id: str
    evaluation: object | None = None  # automl.evaluate.Evaluation on the holdout pages
    promotion: object | None = None  # automl.registry.Promotion
    not_registered: str = ""


def prepare_site(name: str, manifest: Manifest, settings: FederationSettings, features=None, *,
                 split_file=None) -> tuple[SiteClient, SitePages]:
    """At the site: its saved split and feature rows (or tensors), behind a SiteClient (or NetworkSiteClient)."""
    pages = site_pages(name, manifest, seed=settings.seed, split_file=split_file)
    data = to_site_data(pages, features or settings.page_features())
    if settings.trains_network:
        return NetworkSiteClient(data, len(CLASSES), settings.network), pages
    return SiteClient(data, len(CLASSES), settings.head, features=settings.features_id), pages


def simulate_federation(sites: dict[str, Manifest], settings: FederationSettings, *, transport: str = "flower",
                        say: Callable[[str], None] = print) -> Outcome:
    """Every site's client and the server on this machine; the sites' holdout pages score the final model."""
    from automl.federated.flower import simulate
    from automl.federated.protocol import run_in_process

    started = time.monotonic()
    features = settings.page_features()
    clients, holdout = [], []
    for name, manifest in sites.items():
        # Sites cut from one folder (a site CSV) keep their splits apart.
        client, pages = prepare_site(name, manifest, settings, features,
                                     split_file=site_split_file(name, manifest, sites))
        clients.append(client)
        holdout.append(pages.part("holdout").assign(site=name))
        say(f"site {name}: {len(client.data.y_learn)} learning pages, {len(client.data.y_check)} check pages, "
            f"{len(holdout[-1])} holdout pages kept for scoring")
    import pandas as pd

    holdout_frame = pd.concat(holdout, ignore_index=True)
    with _FederationRuns(settings, list(sites), say) as runs:
        coordinator = runs.coordinator(started)
        result = (simulate(clients, coordinator) if transport == "flower" else run_in_process(clients, coordinator))
        return runs.finish(result, holdout_frame, features)


def serve_federation(settings: FederationSettings, address: str, *, min_sites: int, holdout: Manifest | None = None,
                     say: Callable[[str], None] = print) -> Outcome:
    """The coordinating centre: waits for ``min_sites`` sites, runs the rounds, ends with the model.

    ``holdout``: labelled pages held at the centre; without them the model is logged to the run but
    not registered, since nothing here could compare it with the champion.
    """
    from automl.federated.flower import serve

    started = time.monotonic()
    with _FederationRuns(settings, [], say) as runs:
        say(f"federation server on {address}: waiting for {min_sites} site(s)")
        result = serve(runs.coordinator(started), address, min_sites=min_sites,
                       round_timeout=settings.budget_seconds)
        frame = None if holdout is None else holdout.frame.assign(site="centre")
        return runs.finish(result, frame, settings.page_features())


def join_federation(name: str, manifest: Manifest, server: str, settings: FederationSettings,
                    *, say: Callable[[str], None] = print) -> None:
    """A site: read its pages, then take part until the server ends the federation."""
    from automl.federated.flower import join

    client, pages = prepare_site(name, manifest, settings)
    say(f"site {name}: {len(client.data.y_learn)} learning pages, {len(client.data.y_check)} check pages "
        f"({len(pages.part('holdout'))} holdout pages stay unused); joining {server}")
    join(client, server)
    say(f"site {name}: the federation has ended; sent {client.rounds_answered} answers, no page and no page's features")


def final_model(result: FederationResult, settings: FederationSettings, n_sites: int):
    """The global head as an ECGModel: page features -> scaler -> head, temperature-calibrated (or the global
    network: page tensors -> network)."""
    from automl.model import ECGModel

    trained = len(result.rounds)
    if settings.trains_network:
        spec = settings.network
        return network_model(
            result, spec, list(CLASSES), uncertain_below=settings.uncertain_below,
            description=(f"federated {spec.kind} over {spec.view} tensors {spec.size[0]}x{spec.size[1]}: "
                         f"{trained} rounds of {settings.algorithm} across {n_sites} sites"),
            params={"rounds": trained, "model": spec.kind, "algorithm": settings.algorithm,
                    "local_epochs": spec.epochs, "sites": n_sites})
    from features.handcrafted import PageFeatures

    pipeline = as_pipeline(result.weights, result.scaling, list(CLASSES), settings.head)
    # As a search's model: its own extraction, a page at a time, no cache folder of this machine inside it.
    features = PageFeatures(sets=tuple(settings.features), n_jobs=1, cache_dir=None, progress=False)
    model = ECGModel(features, pipeline, CLASSES, engine="federated",
                     description=(f"federated {settings.head.kind} head over {'+'.join(settings.features)}: "
                                  f"{trained} rounds of {settings.algorithm} across {n_sites} sites"),
                     params={"rounds": trained, "head": settings.head.kind, "algorithm": settings.algorithm,
                             "local_epochs": settings.head.epochs, "sites": n_sites})
    model.calibrator = result.calibrator()
    model.uncertain_below = settings.uncertain_below
    return model  # no fitted page gate: its novelty reference would be the sites' pages


class _FederationRuns:
    """The MLflow side: a parent run for the federation, one nested run per round, the registration."""

    def __init__(self, settings: FederationSettings, sites: list[str], say) -> None:
        from automl.tracking import TAG_KIND, SearchTracker, git_commit, resolve_tracking_uri

        self.settings, self.say = settings, say
        self.tracker = SearchTracker(resolve_tracking_uri(settings.tracking_uri), settings.experiment)
        self.tracker.end_orphaned_runs()
        self.run_id = self.tracker.start_search(
            "federated", params={"rounds": settings.rounds, "head": settings.model_kind,
                                 "algorithm": settings.algorithm, **settings.local_recipe, "features": settings.inputs,
                                 "sites": ",".join(sites) or "(joining)",
                                 "seed": settings.seed, "budget_seconds": settings.budget_seconds},
            tags={TAG_KIND: "federated", "smartecg.git_commit": git_commit()})

    def __enter__(self) -> "_FederationRuns":
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.tracker.finish_search("FINISHED" if kind is None else "FAILED")

    def coordinator(self, started: float) -> Coordinator:
        deadline = None if self.settings.budget_seconds is None else started + self.settings.budget_seconds
        if self.settings.trains_network:
            return NetworkCoordinator(list(CLASSES), self.settings.network, self.settings.rounds,
                                      seed=self.settings.seed, on_round=self.log_round, deadline=deadline)
        return Coordinator(list(CLASSES), self.settings.head, self.settings.rounds, seed=self.settings.seed,
                           on_round=self.log_round, deadline=deadline, features=self.settings.features_id)

    def log_round(self, report: RoundReport) -> None:
        from automl.tracking import TAG_KIND

        tracker = self.tracker
        run = tracker.client.create_run(tracker.experiment_id, run_name=f"round-{report.round:03d}",
                                        tags={"mlflow.parentRunId": self.run_id, TAG_KIND: "federated-round"})
        metrics = {f"global_{k}": v for k, v in report.overall.items()}
        for site, figures in report.sites.items():
            metrics.update({f"site_{_metric_name(site)}_{k}": v for k, v in figures.items()})
        tracker.log_metrics(run.info.run_id, metrics)
        tracker.client.set_terminated(run.info.run_id)
        for key in ("macro_f1", "log_loss"):
            tracker.client.log_metric(self.run_id, f"round_{key}", report.overall[key], step=report.round)
        sites = ", ".join(f"{s} {f['macro_f1']:.2f}" for s, f in sorted(report.sites.items()))
        self.say(f"round {report.round}/{self.settings.rounds}: macro-F1 {report.overall['macro_f1']:.3f} on the sites' "
                 f"check pages ({sites})")

    def finish(self, result: FederationResult, holdout_frame, features) -> Outcome:
        settings, tracker = self.settings, self.tracker
        model = final_model(result, settings, len(result.pages_per_site))
        tracker.log_params(self.run_id, {"pages_per_site": result.pages_per_site, "temperature": result.temperature})
        outcome = Outcome(result, model, self.run_id)
        if holdout_frame is None or holdout_frame.empty:
            self._log_model(model)
            outcome.not_registered = ("not registered: the server holds no labelled pages to compare it with the "
                                      "champion on (pass --holdout DIR); the model is in the run's artifacts")
            self.say(outcome.not_registered)
            return outcome
        outcome.evaluation = evaluation = _holdout_evaluation(model, holdout_frame, features)
        tracker.log_metrics(self.run_id, {**evaluation.metrics, **evaluation.group_metrics()}, prefix="holdout_")
        self.say(f"holdout ({len(holdout_frame)} pages): {evaluation.summary()}")
        outcome.promotion = self._register(model, evaluation, holdout_frame, result)
        return outcome

    def _log_model(self, model) -> None:
        import tempfile
        from pathlib import Path

        from automl.registry import MODEL_ARTIFACT, write_model_files

        with tempfile.TemporaryDirectory(prefix="smartecg-model-") as tmp:
            local = write_model_files(model, Path(tmp) / MODEL_ARTIFACT)
            self.tracker.client.log_artifacts(self.run_id, str(local), MODEL_ARTIFACT)

    def _register(self, model, evaluation, holdout_frame, result: FederationResult):
        from dataclasses import replace

        from automl.controller import ScoredCandidate
        from automl.engines.base import Candidate
        from automl.experiment import ExperimentSpec
        from automl.registry import Holdout, promote
        from features.dataset import labelled_content_hash

        settings = self.settings
        labels = holdout_frame["label"].to_numpy(dtype=object)
        holdout = Holdout.of(list(holdout_frame["path"]), labels, list(holdout_frame["sha256"]))
        last = result.rounds[-1].overall["macro_f1"] if result.rounds else math.nan
        candidate = Candidate("federated", model, last, dict(model.params), self.run_id, description=model.description)
        scored = ScoredCandidate(candidate, evaluation, calibration={
            "calibration": f"{model.calibrator.describe()}, chosen on the sites' summed log-loss over a grid"})
        spec = replace(ExperimentSpec(), name=settings.experiment, registry_name=settings.registry_name,
                       features=tuple(settings.inputs.split(",")))
        pages = sorted(result.pages_per_site.items())
        data_hash = hashlib.sha256(repr((pages, labelled_content_hash(holdout_frame["sha256"], labels))).encode())
        promotion = promote(self.tracker, spec, scored, holdout=holdout, data_hash=data_hash.hexdigest()[:16],
                            data_counts={"learning pages per site": result.pages_per_site})
        self.say(f"registered {promotion.name} version {promotion.version} as {promotion.alias}: {promotion.reason}")
        return promotion


def _holdout_evaluation(model, frame, features):
    from automl.evaluate import evaluate

    vectors = features.transform(list(frame["path"]))
    proba = model.proba_from_features(vectors)
    return evaluate(frame["label"].to_numpy(dtype=object), proba, model.classes, groups={"site": frame["site"].tolist()})


def _metric_name(site: str) -> str:
    """MLflow metric names take letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in site)
