"""The bottom layer: what every other part of ocrgraft uses, importing nothing above it."""

__version__ = "0.1.0"
