"""A grpc.Server for the GRPCInferenceService on NEURON_GRPC_BIND, in this process.

Started in each gunicorn worker after fork (gunicorn.conf.py), never in the master: grpcio's
threads do not survive a fork. Every worker binds the same address with SO_REUSEPORT and the
kernel spreads new connections over them, as it spreads nothing for REST (one shared socket).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from ...serving import ModelServer
from ...settings import grpc_address
from .grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from .servicer import InferenceService


def start(model_server: ModelServer) -> Any | None:
    """The started server, or None when NEURON_GRPC_BIND is empty; RuntimeError if unbound."""
    settings = model_server.settings
    if grpc_address(settings.grpc_bind) is None:
        return None
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.so_reuseport", 1),
            # Refused by its length before it is decoded, as REST refuses a body by its
            # Content-Length: RESOURCE_EXHAUSTED.
            ("grpc.max_receive_message_length", settings.max_body_bytes),
        ],
    )
    add_GRPCInferenceServiceServicer_to_server(InferenceService(model_server), server)  # type: ignore[no-untyped-call]
    try:
        bound = server.add_insecure_port(settings.grpc_bind)
    except RuntimeError as exc:  # grpcio raises when it cannot bind
        raise RuntimeError(f"cannot serve gRPC on {settings.grpc_bind}: {exc}") from exc
    if bound == 0:
        raise RuntimeError(f"cannot serve gRPC on {settings.grpc_bind}")
    server.start()
    return server
