"""The GRPCInferenceService: each call translated to and from what REST's V2 routes call.

A call's errors are REST's errors: the same message, the gRPC status of REST's HTTP status.
Each call is measured in REST's request metrics (method "GRPC", the full method name as
endpoint, the HTTP status REST would answer) and gets an access-log line like a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import grpc

from ... import __version__, metrics
from ...errors import NotReady, ServiceError
from ...http.web import log_request, make_request_id
from ...serving import ModelServer
from ..codec import output_datatype
from ..infer import INTERNAL_ERROR, error_message, error_status, version_of
from ..schemas import EXTENSIONS, SERVER_NAME
from . import convert
from . import grpc_predict_v2_pb2 as pb

log = logging.getLogger("neuron.oip")

SERVICE = "inference.GRPCInferenceService"
METHOD = "GRPC"  # the method label and access-log method of every gRPC call
REQUEST_ID_KEY = "x-request-id"  # metadata in, trailing metadata out: REST's X-Request-ID
# The gRPC status of each HTTP status REST answers with; any other is INTERNAL.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# An RPC the service lacks is REST's route it lacks (404), not a server error (5xx alerts).
_CODE_STATUS = {grpc.StatusCode.OK: 200, grpc.StatusCode.UNIMPLEMENTED: 404}
# The message travels in a trailer, and clients refuse metadata past 8 KiB (grpcio's default):
# a message echoing a huge name is cut. REST's body has no such limit; below it, both agree.
MAX_DETAILS = 2048

Reply = TypeVar("Reply")


class InferenceService:
    """The servicer add_GRPCInferenceServiceServicer_to_server takes: one method per RPC."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self._metrics = server.settings.metrics_enabled
        self._max_rows = server.settings.max_batch

    def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return self._call("ServerLive", context, pb.ServerLiveResponse, _live)

    def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        def ready() -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self._ready(None))

        return self._call("ServerReady", context, pb.ServerReadyResponse, ready)

    def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        def ready() -> pb.ModelReadyResponse:
            version = version_of(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=self._ready(version))

        return self._call("ModelReady", context, pb.ModelReadyResponse, ready)

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return self._call("ServerMetadata", context, pb.ServerMetadataResponse, _server_metadata)

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        def metadata() -> pb.ModelMetadataResponse:
            record = self.server.record(version_of(request.name, request.version or None))
            return convert.metadata_response(record.document.n_inputs, self.server.store.versions())

        return self._call("ModelMetadata", context, pb.ModelMetadataResponse, metadata)

    def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        def infer() -> pb.ModelInferResponse:
            version = version_of(request.model_name, request.model_version or None)
            inference, inputs = convert.infer_request(request, self._max_rows)
            datatype = output_datatype(inference.outputs)
            probabilities, record = self.server.infer(inputs, version)
            raw = bool(request.raw_input_contents)
            return convert.infer_response(inference, probabilities, record.version, datatype, raw)

        return self._call("ModelInfer", context, pb.ModelInferResponse, infer)

    def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        return self._unimplemented("RepositoryModelLoad", context, pb.RepositoryModelLoadResponse)

    def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        return self._unimplemented(
            "RepositoryModelUnload", context, pb.RepositoryModelUnloadResponse
        )

    def _ready(self, version: int | None) -> bool:
        """REST's readiness: False while no model loads; a kept version must exist (404)."""
        try:
            if version is None:
                self.server.ready()
            else:
                self.server.record(version)
        except NotReady:
            return False
        return True

    def _unimplemented(self, name: str, context: Any, empty: Callable[[], Reply]) -> Reply:
        def refuse() -> Reply:
            context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            context.set_details("the model repository extension is not supported")
            return empty()

        return self._call(name, context, empty, refuse)

    def _call(
        self, name: str, context: Any, empty: Callable[[], Reply], work: Callable[[], Reply]
    ) -> Reply:
        """``work()``'s reply, or ``empty()`` with the status and message of its error."""
        started = time.perf_counter()
        request_id = make_request_id(_metadata(context, REQUEST_ID_KEY))
        if self._metrics:
            metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            reply = work()
            status = _CODE_STATUS.get(context.code(), 200)
        except ServiceError as error:
            status, reply = error_status(error), empty()
            context.set_code(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL))
            context.set_details(_cut(error_message(error)))
        except Exception:
            log.exception("unhandled error on gRPC %s", name)
            status, reply = 500, empty()
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details(INTERNAL_ERROR)
        finally:
            if self._metrics:
                metrics.REQUESTS_IN_FLIGHT.dec()
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        self._observe(name, status, request_id, time.perf_counter() - started)
        return reply

    def _observe(self, name: str, status: int, request_id: str, elapsed: float) -> None:
        path = f"/{SERVICE}/{name}"
        if self._metrics:
            _duration(path, status).observe(elapsed)
        log_request(request_id, METHOD, path, path, status, elapsed)


def _cut(message: str) -> str:
    return message if len(message) <= MAX_DETAILS else message[: MAX_DETAILS - 3] + "..."


def _live() -> pb.ServerLiveResponse:
    return pb.ServerLiveResponse(live=True)


def _server_metadata() -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS)
    )


def _metadata(context: Any, key: str) -> str:
    """The value of one invocation metadata key; "" if absent."""
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return ""


@lru_cache(maxsize=64)
def _duration(endpoint: str, status: int) -> Any:
    """The labelled histogram child, looked up once per label set rather than per call."""
    return metrics.REQUEST_DURATION_SECONDS.labels(endpoint, METHOD, str(status))
