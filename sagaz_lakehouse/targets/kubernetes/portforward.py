"""Host access to pods through the API server: ``kubectl port-forward`` without kubectl.

Each forward listens on 127.0.0.1:<local port>; every accepted connection opens its own port-forward stream to the
pod (the kubernetes client's websocket ``portforward``), and two threads copy bytes until either side closes.
The pod is resolved when a connection arrives, so a pod restarted in between is found again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaz_lakehouse.errors import EnvironmentProblem

LOOPBACK = "127.0.0.1"
CHUNK = 65536

# Opens a byte stream to (pod name, remote port); returns a socket-like object and a close callback.
Opener = Callable[[str, int], tuple[Any, Callable[[], None]]]


@dataclass(frozen=True)
class Forward:
    label: str  # what it reaches, for messages ("fluss-tablet-0")
    local_port: int
    remote_port: int
    pod: Callable[[], str]  # the pod to reach, looked up per connection


class PortForwards:
    """A context manager running a set of forwards; the listeners close when the block ends."""

    def __init__(self, forwards: list[Forward], opener: Opener, host: str = LOOPBACK) -> None:
        self.forwards = forwards
        self.opener = opener
        self.host = host
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Connection failures (no ready pod, a refused stream), oldest first: the client only sees a reset, so
        # whoever uses the forwards reports these with its own failure (doctor does).
        self.errors: list[str] = []

    def __enter__(self) -> PortForwards:
        try:
            for forward in self.forwards:
                self._listeners.append(self._listen(forward))
        except BaseException:
            self.close()
            raise
        for listener, forward in zip(self._listeners, self.forwards, strict=True):
            thread = threading.Thread(target=self._accept_loop, args=(listener, forward), daemon=True,
                                      name=f"port-forward {forward.local_port}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
            with contextlib.suppress(OSError):
                listener.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._listeners.clear()
        self._threads.clear()

    def _listen(self, forward: Forward) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A command run right after another finds the port's connections of the first still in TIME_WAIT; as kubectl
        # port-forward does, allow that (a socket still listening on the port is refused all the same).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, forward.local_port))
        except OSError as exc:
            listener.close()
            raise EnvironmentProblem(
                f"cannot forward {self.host}:{forward.local_port} to {forward.label}: {exc.strerror or exc}",
                f"stop whatever listens on port {forward.local_port} (a local stack or another port-forward), "
                "or choose other ports with --set ports.<name>=<port>") from exc
        listener.listen(16)
        listener.settimeout(0.5)  # so the accept loop notices close()
        return listener

    def _accept_loop(self, listener: socket.socket, forward: Forward) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, forward), daemon=True).start()

    def _serve(self, client: socket.socket, forward: Forward) -> None:
        try:
            remote, close_remote = self.opener(forward.pod(), forward.remote_port)
        except Exception as exc:  # report, then drop this one connection; the client sees a reset
            why = getattr(exc, "message", "") or str(exc).splitlines()[0]
            self.errors.append(f"127.0.0.1:{forward.local_port} → {forward.label}: {why}")
            client.close()
            return
        client.settimeout(None)
        upstream = threading.Thread(target=_copy, args=(client, remote), daemon=True)
        upstream.start()
        _copy(remote, client)
        upstream.join(timeout=5)
        close_remote()
        client.close()


def _copy(source: Any, sink: Any) -> None:
    """Copy until EOF or error, then half-close the sink so the other direction can finish."""
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def pod_opener(core_api: Any, namespace: str) -> Opener:
    """Streams through the API server's pods/portforward subresource.

    ``core_api`` must have an ApiClient of its own: the client's ``stream`` swaps that ApiClient's request method
    while it opens a websocket, so a concurrent ordinary call on the same ApiClient (looking up the ready pod) would
    go out as a websocket, and two streams opening at once would swap it under each other. Openings are serialized
    here; the streams themselves then run in parallel."""
    opening = threading.Lock()

    def open_stream(pod: str, port: int) -> tuple[Any, Callable[[], None]]:
        from kubernetes.stream import portforward

        with opening:
            forward = portforward(core_api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        stream = forward.socket(port)
        stream.setblocking(True)
        return stream, forward.close

    return open_stream
