"""``python -m jobhub`` is the ``jobhub`` command."""

from .cli import main

main()
