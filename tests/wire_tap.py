"""A TCP relay that records every byte a federation's sites send to its server: what crosses the wire."""
from __future__ import annotations

import socket
import threading
import time


class WireTap:
    """Listens on a free local port and relays each connection to ``target`` (host, port), keeping
    the bytes of each direction (``sent``: site to server; ``received``: server to site)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent: list[bytearray] = []  # one per connection
        self.received: list[bytearray] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def sent_bytes(self) -> bytes:
        with self._lock:
            return b"".join(bytes(b) for b in self.sent)

    def received_bytes(self) -> bytes:
        with self._lock:
            return b"".join(bytes(b) for b in self.received)

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                site, _ = self._listener.accept()
            except OSError:
                return
            server = self._connect()
            if server is None:
                site.close()
                continue
            with self._lock:
                sent, received = bytearray(), bytearray()
                self.sent.append(sent)
                self.received.append(received)
            threading.Thread(target=self._pump, args=(site, server, sent), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, site, received), daemon=True).start()

    def _connect(self, seconds: float = 60.0) -> socket.socket | None:
        """The server may still be starting: like a real relay, keep trying for a while."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                return socket.create_connection(self.target)
            except OSError:
                time.sleep(0.2)
        return None

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        try:
            while chunk := source.recv(65536):
                with self._lock:
                    record.extend(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
