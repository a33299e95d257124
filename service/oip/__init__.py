"""The Open Inference Protocol (KServe V2 REST): routes, the infer lanes, schemas, codec.

routes.py is its blueprint; lane.py serves binary and JSON infers as plain WSGI; infer.py is
an infer without HTTP; codec.py reads and writes its tensors; schemas.py holds its envelopes
and openapi.py its rows of the OpenAPI document.

An adapter on ModelServer.infer() beside the HTTP layer, whose plumbing (web, body readers,
the OpenAPI builder) it uses: may import service.http, serving and everything below them;
only app imports it.
"""

from .infer import PREFIX, error_answer
from .lane import BinaryLane, JsonInferLane
from .routes import bp

__all__ = ["PREFIX", "BinaryLane", "JsonInferLane", "bp", "error_answer"]
