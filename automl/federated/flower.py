"""The federation over Flower: the coordinator as a Flower strategy, each site as a Flower client.

Flower carries the messages of :mod:`automl.federated.protocol` over gRPC; the numbers are the same
as :func:`~automl.federated.protocol.run_in_process` gives. Flower's server loop is its classic
one (``start_server``/``start_client``), which needs no SuperLink or Ray: a site runs one process
that dials out to the server, and a simulation runs the server and one thread per site on loopback.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

from automl.federated.protocol import Coordinator, FederationFailed, SiteClient

__all__ = ["free_port", "join", "serve", "simulate"]

log = logging.getLogger(__name__)


def serve(coordinator: Coordinator, address: str, *, min_sites: int, round_timeout: float | None = None,
          wait_seconds: float = 600.0):
    """Run the federation's rounds as a Flower server on ``address``; returns the coordinator's result.

    Flower's server installs signal handlers, so this runs in the main thread.
    """
    import flwr

    _quiet_flower()
    strategy = _strategy_class()(coordinator, min_sites=min_sites, wait_seconds=wait_seconds)
    flwr.server.start_server(server_address=address, strategy=strategy,
                             config=flwr.server.ServerConfig(num_rounds=coordinator.total_rounds,
                                                             round_timeout=round_timeout))
    if strategy.error is not None:
        raise strategy.error
    return coordinator.result()


def join(site: SiteClient, server: str, *, wait_seconds: float = 120.0) -> None:
    """Take part in the federation at ``server`` (HOST:PORT) until it ends."""
    import flwr

    import grpc

    _quiet_flower()
    host, _, port = server.rpartition(":")
    deadline = time.monotonic() + wait_seconds
    while True:
        _wait_for_port(host or "127.0.0.1", int(port), max(deadline - time.monotonic(), 0.0))
        try:
            flwr.client.start_client(server_address=server, client=_client_class()(site).to_client(), insecure=True)
            return
        except grpc.RpcError as error:
            # Something listens (a relay, a server still starting) but the federation is not there yet.
            unavailable = getattr(error, "code", lambda: None)() == grpc.StatusCode.UNAVAILABLE
            if not unavailable or site.rounds_answered or time.monotonic() > deadline:
                state = "stopped answering" if site.rounds_answered else "is not answering"
                details = error.details() if hasattr(error, "details") else str(error)
                raise ConnectionError(f"site {site.data.name!r}: the federation server at {server} {state}: "
                                      f"{details}") from None
            time.sleep(1.0)


def simulate(sites: list[SiteClient], coordinator: Coordinator, *, address: str | None = None, dial: str | None = None):
    """Server and one client thread per site on loopback: a real Flower federation on one machine.

    The server listens on ``address`` (a free local port by default); the sites dial ``dial``
    (default: ``address``; a relay in between sees exactly what a site sends).
    """
    address = address or f"127.0.0.1:{free_port()}"
    errors: list[BaseException] = []

    def run(site: SiteClient) -> None:
        try:
            join(site, dial or address)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(site,), name=f"site-{site.data.name}", daemon=True) for site in sites]
    for thread in threads:
        thread.start()
    result = serve(coordinator, address, min_sites=len(sites))
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return result


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_for_port(host: str, port: int, seconds: float) -> None:
    """Flower's classic client gives up at once on a refused connection: wait for the server first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ConnectionError(f"no federation server at {host}:{port} after {seconds:.0f} s: "
                                      "start `smartecg federated server` first, or check the address") from None
            time.sleep(0.2)


def _quiet_flower() -> None:
    """Flower's own console handler writes to the terminal; its lines go where the other libraries' go
    (automl.library_log's file, or the terminal with -v)."""
    from flwr.common.logger import FLOWER_LOGGER

    for handler in list(FLOWER_LOGGER.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            FLOWER_LOGGER.removeHandler(handler)


def _client_class():
    from flwr.client import NumPyClient

    class FlowerSite(NumPyClient):
        """A site's :class:`SiteClient` behind Flower's NumPy client: nothing else leaves it."""

        def __init__(self, site: SiteClient) -> None:
            self.site = site

        def get_parameters(self, config):
            return []

        def fit(self, parameters, config):
            return self.site.fit(parameters, dict(config))

        def evaluate(self, parameters, config):
            return self.site.evaluate(parameters, dict(config))

    return FlowerSite


def _strategy_class():
    from flwr.common import EvaluateIns, FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import Strategy

    class CoordinatorStrategy(Strategy):
        """Every connected site takes part in every round; the coordinator decides what is sent and kept."""

        def __init__(self, coordinator: Coordinator, *, min_sites: int, wait_seconds: float) -> None:
            self.coordinator, self.min_sites, self.wait_seconds = coordinator, min_sites, wait_seconds
            self.error: BaseException | None = None
            self._trained: set[int] = set()  # the rounds whose fit ran: only they are evaluated

        def initialize_parameters(self, client_manager):
            return ndarrays_to_parameters([])  # nothing asked of a site before round 1

        def _sites(self, client_manager):
            if not client_manager.wait_for(self.min_sites, timeout=self.wait_seconds):
                self.error = TimeoutError(f"{client_manager.num_available()} of the {self.min_sites} sites joined "
                                          f"within {self.wait_seconds:.0f} s")
                return []
            return list(client_manager.all().values())

        def configure_fit(self, server_round, parameters, client_manager):
            if self.error is not None or not self.coordinator.wants_round(server_round):
                return []  # Flower skips the round
            self._trained.add(server_round)
            arrays, config = self.coordinator.instruction(server_round)
            instruction = FitIns(ndarrays_to_parameters(arrays), config)
            return [(client, instruction) for client in self._sites(client_manager)]

        def aggregate_fit(self, server_round, results, failures):
            if failures and results:
                log.warning("round %d: %d site(s) failed: %s", server_round, len(failures), _failure_text(failures))
            if not results:
                self.error = self.error or FederationFailed(
                    f"round {server_round}: no site answered ({len(failures)} failed: {_failure_text(failures)}); "
                    "each site's own output says why (another --model or --features, too few pages...)")
                return None, {}
            try:
                self.coordinator.aggregate_fit(server_round, [
                    (parameters_to_ndarrays(res.parameters), res.num_examples, res.metrics) for _, res in results])
            except Exception as error:  # the server loop would swallow it
                self.error = self.error or error
                return None, {}
            return ndarrays_to_parameters(self.coordinator.global_parameters()), {}

        def configure_evaluate(self, server_round, parameters, client_manager):
            if server_round == 1 or self.error is not None or server_round not in self._trained:
                return []
            instruction = EvaluateIns(ndarrays_to_parameters(self.coordinator.global_parameters()), {})
            return [(client, instruction) for client in self._sites(client_manager)]

        def aggregate_evaluate(self, server_round, results, failures):
            if not results:
                return None, {}
            report = self.coordinator.aggregate_evaluate(
                server_round, [(res.loss, res.num_examples, res.metrics) for _, res in results])
            return report.overall["log_loss"], dict(report.overall)

        def evaluate(self, server_round, parameters):
            return None  # the server holds no pages

    return CoordinatorStrategy


def _failure_text(failures) -> str:
    def said(failure) -> str:
        if isinstance(failure, BaseException):
            return (str(failure) or type(failure).__name__)[:200]
        return str(getattr(getattr(failure[1], "status", None), "message", "") or "no reason given")[:200]

    return "; ".join(said(f) for f in failures[:3])
