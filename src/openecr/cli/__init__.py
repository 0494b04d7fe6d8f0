"""The ``openecr`` command line."""

from __future__ import annotations

from openecr.cli._main import main

__all__ = ["main"]
