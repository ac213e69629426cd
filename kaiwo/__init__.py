"""Kaiwo: the command line, the Kubernetes controller and the simulator around ``kaiwo_core``."""
__version__ = "0.1.0"
