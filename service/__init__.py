"""neuron-service: one sigmoid neuron, served."""

__version__ = "0.1.0"
