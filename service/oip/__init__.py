"""The Open Inference Protocol (KServe V2 REST): routes, schemas and the tensor codec."""

from .routes import bp

__all__ = ["bp"]
