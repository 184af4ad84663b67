"""The ``kubeedge`` command line (click; rich for what a person reads)."""

from kubeedge.cli.main import cli, main

__all__ = ["cli", "main"]
