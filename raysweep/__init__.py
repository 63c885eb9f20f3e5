"""raysweep: rank pretraining data recipes with tiny-learning-rate proxies, on Ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raysweep")
except PackageNotFoundError:  # imported from a checkout that was never installed (a Ray job's working directory)
    __version__ = "unknown"
