"""Vinh IOC — the Intelligent Operations Center of a Vietnamese city."""

__version__ = "0.1.0"
