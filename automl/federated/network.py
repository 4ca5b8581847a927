"""Federated averaging of a Keras network over page tensors: the protocol's messages, another model.

The rounds are the head's (:mod:`automl.federated.protocol`): round 1 gathers each site's pages per
class (for the class weights; a network needs no feature scaling, its tensors are ink in 0..1) and
the server builds the network (seeded) whose weights every site starts from; each later round a
site loads the global weights into its own copy of the network, trains it for a few epochs on its
page tensors (:class:`features.tensors.PageTensors`) and sends the weights back, and the
coordinator averages them weighted by pages (plain FedAvg, batch-norm statistics included; no
FedProx term here). The sites then score the global network on their check pages and send counts
only, from which the temperature is chosen, as for the head.

TensorFlow is imported only when a network is built, so the head's federation never loads it.
Keras keeps process-wide state (seeds, layer names), so in one process (a simulation's client
threads) one site trains at a time: the same weights as the sites would get in their own processes.
"""
from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass

import numpy as np

from automl.federated.protocol import (STATS, TRAIN, Coordinator, FederationResult, SiteData, balanced_class_weight,
                                       check_pages, counts_answer, refuse_other_setup)

__all__ = ["NetworkCoordinator", "NetworkSiteClient", "NetworkSpec", "network_model"]

_KERAS = threading.Lock()  # one Keras build or training at a time in this process (see the module docstring)


@dataclass(frozen=True)
class NetworkSpec:
    """The network a federation trains, the tensors it reads, and a site's recipe for one round."""

    family: str = "cnn"  # an image family of automl.engines.networks trained from scratch
    width: int = 8
    depth: int = 3
    dropout: float = 0.3
    view: str = "leads"  # the layout-proof lead mosaic
    size: tuple[int, int] = (64, 96)
    epochs: int = 2  # local passes over a site's pages per round
    batch_size: int = 16
    learning_rate: float = 1e-3

    @property
    def kind(self) -> str:
        """What server and sites must agree on (announced in round 1)."""
        return f"{self.family}(width={self.width},depth={self.depth},dropout={self.dropout:g})"

    @property
    def features_id(self) -> str:
        from features.tensors import _VERSIONS

        return f"tensors:{self.view}:{self.size[0]}x{self.size[1]}:{_VERSIONS[self.view]}"

    def tensors(self, cache_dir=None, n_jobs: int = 1, progress: bool | None = False):
        from features.tensors import PageTensors

        return PageTensors(view=self.view, size=tuple(self.size), n_jobs=n_jobs, cache_dir=cache_dir,
                           progress=progress)

    def build(self, n_classes: int, seed: int):
        """The network with seeded initial weights (the same on every machine with the same versions)."""
        from automl.engines.deep_training import configure_tensorflow
        from automl.engines.networks import build_network

        configure_tensorflow(seed)
        return build_network(self.family, self.tensors().input_shape, n_classes, width=self.width, depth=self.depth,
                             dropout=self.dropout)


class NetworkSiteClient:
    """One site's side for a network: its page tensors stay here, weights and counts leave."""

    def __init__(self, data: SiteData, n_classes: int, spec: NetworkSpec) -> None:
        check_pages(data)
        self.data = SiteData(data.name, np.asarray(data.X_learn, dtype=np.float32), np.asarray(data.y_learn),
                             np.asarray(data.X_check, dtype=np.float32), np.asarray(data.y_check))
        self.n_classes, self.spec = n_classes, spec
        self.features = spec.features_id
        self.rounds_answered = 0
        self._salt = zlib.crc32(data.name.encode())
        self._network = None

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        import keras

        d = self.data
        self.rounds_answered += 1
        if config["stage"] == STATS:
            refuse_other_setup(d.name, config, features=self.features, model=self.spec.kind)
            return [np.bincount(d.y_learn, minlength=self.n_classes).astype(float)], len(d.y_learn), {"site": d.name}
        class_weight, *weights = parameters
        with _KERAS:
            network = self._network_with(weights)
            keras.utils.set_random_seed((int(config["seed"]) + self._salt) % 2 ** 31)
            _fresh_optimizer(network, float(config.get("learning_rate", self.spec.learning_rate)))
            network.fit(d.X_learn, d.y_learn, epochs=int(config.get("epochs", self.spec.epochs)),
                        batch_size=int(config.get("batch_size", self.spec.batch_size)), shuffle=True, verbose=0,
                        class_weight={i: float(w) for i, w in enumerate(class_weight)})
            trained = [np.asarray(w) for w in network.get_weights()]
        return trained, len(d.y_learn), {"site": d.name}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:
        d = self.data
        self.rounds_answered += 1
        _, *weights = parameters
        with _KERAS:
            proba = self._network_with(weights).predict(d.X_check, batch_size=64, verbose=0)
        return counts_answer(d.name, proba, d.y_check, self.n_classes)

    def _network_with(self, weights: list[np.ndarray]):
        if self._network is None:
            self._network = self.spec.build(self.n_classes, seed=0)  # its own weights are replaced at once
        self._network.set_weights([np.asarray(w) for w in weights])
        return self._network


def _fresh_optimizer(network, learning_rate: float) -> None:
    """A site starts every round with a fresh Adam (FedAvg averages weights, not optimizer states).

    Compiled once, then the optimizer's moments and step count are zeroed: compiling again would
    make Keras trace its training step anew every round.
    """
    from automl.engines.deep_training import _compile

    if not network.compiled:
        _compile(network, learning_rate)
        return
    for variable in network.optimizer.variables:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    network.optimizer.learning_rate = learning_rate


class NetworkCoordinator(Coordinator):
    """The server's side for a network: the head's rounds, averaging and figures; other parameters.

    What a training round sends: the class weights, then the network's weights (``get_weights()``).
    """

    def __init__(self, classes: list[str], spec: NetworkSpec, rounds: int, **options) -> None:
        options.setdefault("features", spec.features_id)
        super().__init__(classes, spec, rounds, **options)
        self.model = spec.kind

    def instruction(self, server_round: int) -> tuple[list[np.ndarray], dict]:
        if server_round == 1:
            return super().instruction(server_round)
        spec = self.spec
        return self.global_parameters(), {"stage": TRAIN, "seed": self.round_seed(server_round), "epochs": spec.epochs,
                                          "batch_size": spec.batch_size, "learning_rate": spec.learning_rate}

    def global_parameters(self) -> list[np.ndarray]:
        return [self.class_weight, *self.weights]

    def gather_statistics(self, sums: list[np.ndarray]) -> None:
        (per_class,) = sums
        self.class_weight = balanced_class_weight(per_class)
        with _KERAS:
            self.weights = [np.asarray(w) for w in self.spec.build(len(self.classes), seed=self.seed).get_weights()]


def network_model(result: FederationResult, spec: NetworkSpec, classes: list[str], *, description: str = "",
                  params: dict | None = None, uncertain_below: float | None = None):
    """The global network as an ECGModel: page tensors -> network, temperature-calibrated.

    Its tensors have no cache folder: the model must work on any machine.
    """
    from automl.engines.keras_model import KerasClassifier
    from automl.model import ECGModel

    with _KERAS:
        network = spec.build(len(classes), seed=0)
        network.set_weights([np.asarray(w) for w in result.weights])
    description = description or f"federated {spec.kind} over {spec.view} tensors"
    model = ECGModel(spec.tensors(), KerasClassifier(network, len(classes), description=description), list(classes),
                     engine="federated", description=description, params=dict(params or {}))
    model.calibrator = result.calibrator()
    if uncertain_below is not None:
        model.uncertain_below = uncertain_below
    return model
