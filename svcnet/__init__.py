"""svcnet: Kubernetes Services for plain Linux machines."""

__version__ = "0.1.0"
