"""raysweep: rank pretraining data recipes with tiny-learning-rate proxies, on Ray."""

from importlib.metadata import version

__version__ = version("raysweep")
