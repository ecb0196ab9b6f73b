"""``python -m jobhub`` is the ``jobhub`` command."""

from jobhub.client.cli import main

main()
