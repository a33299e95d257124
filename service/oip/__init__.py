"""The Open Inference Protocol (KServe V2 REST): routes, the binary lane, schemas, codec."""

from .lane import BinaryLane
from .routes import bp

__all__ = ["BinaryLane", "bp"]
