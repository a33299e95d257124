"""The Open Inference Protocol (KServe V2 REST): routes, the binary lane, schemas, codec.

routes.py is its blueprint; lane.py serves binary infers as plain WSGI; infer.py is an infer
without HTTP; codec.py reads and writes its tensors; schemas.py holds its envelopes and
openapi.py its rows of the OpenAPI document.

An adapter on ModelServer.infer() beside the HTTP layer, whose plumbing (web, body readers,
the OpenAPI builder) it uses: may import service.http, serving and everything below them;
only app imports it.
"""

from .infer import PREFIX, error_answer
from .lane import BinaryLane
from .routes import bp

__all__ = ["PREFIX", "BinaryLane", "bp", "error_answer"]
