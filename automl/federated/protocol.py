"""What a site and the coordinator say to each other, whatever carries it (Flower, or a loop in one process).

A federation runs in rounds. Round 1 gathers statistics: each site sends how many values it has
per feature, their sums and sums of squares, and its pages per class; the coordinator turns them
into one feature scaling and one set of class weights. Every later round sends the global head
(with that scaling) to the sites, each trains it on its own pages for a few epochs and sends the
new weights back, and the coordinator averages them weighted by pages (FedAvg; FedProx when the
head's ``mu`` is set). After each training round every site scores the global head on its own
check pages and sends back counts only: its confusion matrix, and its summed log-loss under a
grid of temperatures, from which the coordinator picks the calibration temperature.

So what leaves a site is: sums over its pages (round 1), weights (every round), and per-round
counts. Never a page, and never a row of one page's features; a site with fewer than
``MIN_SITE_PAGES`` learning pages refuses to take part, because its sums would be too close to
single pages.
"""
from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from automl.federated.head import HeadSpec, Scaling, feature_sums, head_proba, initial_weights, train_locally

__all__ = ["HEAD", "MIN_SITE_PAGES", "TEMPERATURES", "Coordinator", "FederationFailed", "FederationResult", "RoundReport", "SiteClient",
           "SiteData", "balanced_class_weight", "check_pages", "counts_answer", "macro_f1_of", "refuse_other_setup",
           "run_in_process"]

MIN_SITE_PAGES = 10
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 41))  # the calibration grid
STATS, TRAIN = "stats", "train"
HEAD = "head"  # the model kind a head federation announces in round 1 (networks announce their own)
_RECIPE = ("epochs", "batch_size", "learning_rate", "l2", "mu")


class FederationFailed(ValueError):
    """The federation could not go on (no site answered a round...): a command says it in one line."""


@dataclass
class SiteData:
    """A site's own pages, as feature rows that never leave it: learn (train) and check (validation)."""

    name: str
    X_learn: np.ndarray
    y_learn: np.ndarray  # class indices
    X_check: np.ndarray
    y_check: np.ndarray


class SiteClient:
    """One site's side: answers the coordinator's instructions from its own pages."""

    def __init__(self, data: SiteData, n_classes: int, spec: HeadSpec, *, features: str = "") -> None:
        check_pages(data)
        self.data, self.n_classes, self.spec, self.features = data, n_classes, spec, features
        self.rounds_answered = 0
        self._salt = zlib.crc32(data.name.encode())

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        d = self.data
        self.rounds_answered += 1
        if config["stage"] == STATS:
            refuse_other_setup(d.name, config, features=self.features, model=HEAD)
            count, total, squares = feature_sums(d.X_learn)
            per_class = np.bincount(d.y_learn, minlength=self.n_classes).astype(float)
            return [count, total, squares, per_class], len(d.y_learn), {"site": d.name}
        scaling, class_weight, weights = _unpack(parameters)
        recipe = replace(self.spec, **{k: config[k] for k in _RECIPE if k in config})
        trained = train_locally(weights, scaling.apply(d.X_learn), d.y_learn, class_weight, recipe,
                                seed=int(config["seed"]) + self._salt)
        return trained, len(d.y_learn), {"site": d.name}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:
        d = self.data
        self.rounds_answered += 1
        scaling, _, weights = _unpack(parameters)
        return counts_answer(d.name, head_proba(weights, scaling.apply(d.X_check)), d.y_check, self.n_classes)


def check_pages(data: SiteData) -> None:
    """A site with too few learning pages refuses to take part (see the module docstring)."""
    if len(data.y_learn) < MIN_SITE_PAGES:
        raise ValueError(f"site {data.name!r} has {len(data.y_learn)} learning pages; a site needs at least "
                         f"{MIN_SITE_PAGES}, or its sums would all but give single pages away")


def refuse_other_setup(site: str, config: dict, *, features: str, model: str) -> None:
    """Round 1: a site set for another model, or that read other inputs, than the server's refuses.

    The model first: a site set for another model also reads other inputs, and --model is its fix.
    """
    kind = str(config.get("model", ""))
    if kind and kind != model:
        raise ValueError(f"site {site!r}: the server trains the model {kind}, this site is set for {model}; "
                         "start the client with the server's --model (and the same SmartECG version)")
    wanted = str(config.get("features", ""))
    if wanted and features and wanted != features:
        raise ValueError(f"site {site!r}: the server trains on features {wanted}, this site read {features}; "
                         "start the client with the server's --features (and the same SmartECG version)")


def counts_answer(site: str, proba: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, int, dict]:
    """What a site says of the global model on its check pages: counts only.

    Its summed log-loss, its confusion matrix, and its summed log-loss under every temperature of the grid.
    """
    proba = np.asarray(proba, dtype=float)
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (y, proba.argmax(axis=1)), 1)
    logits = np.log(np.clip(proba, 1e-12, None))
    nll = [_summed_nll(logits / t, y) for t in TEMPERATURES]
    loss = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).sum())
    return loss, len(y), {"site": site, "confusion": json.dumps(confusion.tolist()),
                          "nll_by_temperature": json.dumps(nll)}


@dataclass
class RoundReport:
    """One training round's figures: each site's on its own check pages, and the federation's."""

    round: int
    sites: dict[str, dict[str, float]]
    overall: dict[str, float]


@dataclass
class FederationResult:
    weights: list[np.ndarray]
    scaling: Scaling
    class_weight: np.ndarray
    temperature: float
    rounds: list[RoundReport] = field(default_factory=list)
    pages_per_site: dict[str, int] = field(default_factory=dict)

    def calibrator(self):
        """Temperature scaling at the temperature the sites' summed log-loss chose (the final model's)."""
        from automl.calibration import TemperatureScaling

        calibrator = TemperatureScaling()
        calibrator.temperature_ = self.temperature
        return calibrator


class Coordinator:
    """The server's side: what each round asks, and what it makes of the answers.

    ``rounds`` counts training rounds; the federation runs ``rounds + 1`` (the first gathers
    statistics). ``on_round`` is called with each :class:`RoundReport` (for MLflow, progress).
    Subclasses federate other models (:class:`automl.federated.network.NetworkCoordinator`): they
    set ``model`` and override what round 1 makes of the statistics and what a round sends.
    """

    model = HEAD  # announced in round 1: a site set for another model refuses

    def __init__(self, classes: list[str], spec: HeadSpec, rounds: int, *, seed: int = 0, on_round=None,
                 deadline: float | None = None, features: str = "") -> None:
        self.classes, self.spec, self.rounds, self.seed = list(classes), spec, rounds, seed
        self.on_round, self.deadline, self.features = on_round, deadline, features
        self.scaling: Scaling | None = None
        self.class_weight: np.ndarray | None = None
        self.weights: list[np.ndarray] | None = None
        self.reports: list[RoundReport] = []
        self.pages_per_site: dict[str, int] = {}
        self._nll = np.zeros(len(TEMPERATURES))

    @property
    def total_rounds(self) -> int:
        return self.rounds + 1

    def wants_round(self, server_round: int) -> bool:
        """Whether round ``server_round`` runs: the statistics and the first training round always do, the
        others while the budget lasts (``deadline``, time.monotonic())."""
        return server_round <= 2 or self.deadline is None or time.monotonic() < self.deadline

    def instruction(self, server_round: int) -> tuple[list[np.ndarray], dict]:
        """(parameters, config) sent to every site in round ``server_round`` (from 1)."""
        if server_round == 1:
            return [], {"stage": STATS, "features": self.features, "model": self.model}
        spec = self.spec  # the server's training recipe is the one every site follows
        return self.global_parameters(), {"stage": TRAIN, "seed": self.round_seed(server_round),
                                          "epochs": spec.epochs, "batch_size": spec.batch_size,
                                          "learning_rate": spec.learning_rate, "l2": spec.l2, "mu": spec.mu}

    def round_seed(self, server_round: int) -> int:
        return self.seed * 100_003 + server_round

    def global_parameters(self) -> list[np.ndarray]:
        return [self.scaling.mean, self.scaling.std, self.class_weight, *self.weights]

    def aggregate_fit(self, server_round: int, answers: list[tuple[list[np.ndarray], int, dict]]) -> None:
        """Sums (round 1) or page-weighted averages of weights (later rounds)."""
        if not answers:
            raise FederationFailed(f"round {server_round}: no site answered")
        # In the sites' order, not their arrival's: sums of floats depend on the order, and a rerun or the
        # same rounds in one process must give the same weights to the bit.
        answers = sorted(answers, key=lambda answer: str(answer[2].get("site", "")))
        if server_round == 1:
            self.pages_per_site = {str(metrics["site"]): int(n) for _, n, metrics in answers}
            self.gather_statistics([sum(parts) for parts in zip(*(a[0] for a in answers))])
            return
        pages = np.asarray([n for _, n, _ in answers], dtype=float)
        share = pages / pages.sum()
        # Each array keeps the type the sites sent (float32 for a Keras network, float64 for the head).
        sent = [np.asarray(w).dtype for w in answers[0][0]]
        self.weights = [np.asarray(sum(s * a[0][i] for s, a in zip(share, answers)), dtype=sent[i])
                        for i in range(len(self.weights))]

    def gather_statistics(self, sums: list[np.ndarray]) -> None:
        """Round 1: the sites' summed statistics -> scaling, class weights and the initial weights."""
        count, total, squares, per_class = sums
        self.scaling = Scaling.from_sums(count, total, squares)
        self.class_weight = balanced_class_weight(per_class)
        self.weights = initial_weights(len(total), len(self.classes), self.spec, seed=self.seed)

    def aggregate_evaluate(self, server_round: int, answers: list[tuple[float, int, dict]]) -> RoundReport:
        sites, confusions, loss, pages = {}, [], 0.0, 0
        nll = np.zeros(len(TEMPERATURES))
        for site_loss, n, metrics in answers:
            confusion = np.asarray(json.loads(metrics["confusion"]), dtype=int)
            confusions.append(confusion)
            nll += np.asarray(json.loads(metrics["nll_by_temperature"]), dtype=float)
            sites[str(metrics["site"])] = {"macro_f1": macro_f1_of(confusion), "accuracy": _accuracy(confusion),
                                           "log_loss": site_loss / max(n, 1), "pages": float(n)}
            loss, pages = loss + site_loss, pages + n
        total = sum(confusions)
        report = RoundReport(server_round - 1, sites, {"macro_f1": macro_f1_of(total), "accuracy": _accuracy(total),
                                                       "log_loss": loss / max(pages, 1), "pages": float(pages)})
        self._nll = nll
        self.reports.append(report)
        if self.on_round is not None:
            self.on_round(report)
        return report

    def result(self) -> FederationResult:
        if self.weights is None:
            raise FederationFailed("the federation ended before its first training round")
        temperature = float(TEMPERATURES[int(np.argmin(self._nll))]) if self._nll.any() else 1.0
        return FederationResult([w.copy() for w in self.weights], self.scaling, self.class_weight, temperature,
                                list(self.reports), dict(self.pages_per_site))


def run_in_process(clients: list[SiteClient], coordinator: Coordinator) -> FederationResult:
    """The federation's rounds as plain calls: the same messages as over Flower, without a network."""
    for server_round in range(1, coordinator.total_rounds + 1):
        if not coordinator.wants_round(server_round):
            break
        parameters, config = coordinator.instruction(server_round)
        coordinator.aggregate_fit(server_round, [client.fit(parameters, config) for client in clients])
        if server_round > 1:
            parameters = coordinator.global_parameters()
            coordinator.aggregate_evaluate(server_round, [client.evaluate(parameters, {}) for client in clients])
    return coordinator.result()


def balanced_class_weight(per_class: np.ndarray) -> np.ndarray:
    """Weights giving every class present the same total weight; a class no site has gets 0."""
    per_class = np.asarray(per_class, dtype=float)
    present = per_class > 0
    return np.where(present, per_class.sum() / (present.sum() * np.maximum(per_class, 1)), 0.0)


def macro_f1_of(confusion: np.ndarray) -> float:
    """Macro-F1 over the classes that occur in the truth (rows), from a confusion matrix."""
    confusion = np.asarray(confusion, dtype=float)
    tp = np.diag(confusion)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = support > 0
    if not present.any():
        return math.nan
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1e-12), 0.0)
    return float(f1[present].mean())


def _accuracy(confusion: np.ndarray) -> float:
    return float(np.trace(confusion) / max(confusion.sum(), 1))


def _summed_nll(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_proba = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_proba[np.arange(len(y)), y].sum())


def _unpack(parameters: list[np.ndarray]) -> tuple[Scaling, np.ndarray, list[np.ndarray]]:
    mean, std, class_weight, *weights = parameters
    return Scaling(np.asarray(mean), np.asarray(std)), np.asarray(class_weight), [np.asarray(w) for w in weights]
