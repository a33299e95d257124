"""The gRPC side of a gunicorn worker: its port claimed by the master, a server per worker.

The master claims NEURON_GRPC_BIND before any fork (claim_port): a socket bound there with
SO_REUSEPORT but never listening, so it takes no connection, while any other process that
binds the address plainly (another neuron-service's master included) is refused. Without
it, a second server of the same user would join the workers' SO_REUSEPORT group silently
and take a share of the connections. Each worker then starts its own grpc.Server on that
address after fork (start), begins a graceful stop when SIGTERM asks it to drain, and is
stopped before it exits (stop). grpcio is imported in the workers only.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from ..settings import Settings, grpc_address

GRPC_SERVER_KEY = "grpc_server"  # the worker attribute holding its grpc.Server


def claim_port(settings: Settings) -> socket.socket | None:
    """In the master: hold NEURON_GRPC_BIND for this server's workers; OSError if taken."""
    address = grpc_address(settings.grpc_bind)
    if address is None:
        return None
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # First a plain bind (SO_REUSEADDR only, as after a restart): refused if anyone holds it.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                exc.errno, f"NEURON_GRPC_BIND {settings.grpc_bind} is in use: {exc.strerror}"
            ) from None
    guard = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEPORT without SO_REUSEADDR: the workers (both options) may join it, a plain
    # bind may not; never listening, it is in no accept queue the kernel chooses from.
    guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    guard.bind((host, port))
    return guard


def start(worker: Any) -> None:
    """In a worker whose app is loaded: serve gRPC beside it, unless NEURON_GRPC_BIND is empty."""
    model_server = getattr(worker.wsgi, "extensions", {}).get("neuron")
    if model_server is None:  # an app other than the service's (bench floors): no gRPC
        return
    from ..oip.rpc import server as rpc_server  # after fork: grpcio in the workers only

    grpc_server = rpc_server.start(model_server)
    if grpc_server is None:
        return
    setattr(worker, GRPC_SERVER_KEY, grpc_server)
    grace = float(worker.cfg.graceful_timeout)
    previous = signal.getsignal(signal.SIGTERM)

    def drain(signum: int, frame: Any) -> None:
        # gRPC drains beside the HTTP connections, within the same graceful timeout.
        grpc_server.stop(grace)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, drain)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it: requests go on
    worker.log.info("Serving gRPC on %s (pid: %s)", model_server.settings.grpc_bind, worker.pid)


def stop(worker: Any, grace: float | None) -> None:
    """Stop the worker's gRPC server (None: at once), waiting for its calls up to ``grace``."""
    grpc_server = getattr(worker, GRPC_SERVER_KEY, None)
    if grpc_server is not None:
        grpc_server.stop(grace).wait(grace)
