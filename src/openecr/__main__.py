"""``python -m openecr`` is the ``openecr`` command."""

from openecr.cli import main

main()
