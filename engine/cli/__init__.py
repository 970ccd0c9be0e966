"""The ``hookmap`` command line."""

from engine.cli.group import main

__all__ = ["main"]
