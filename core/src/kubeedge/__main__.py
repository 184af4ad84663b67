"""``python -m kubeedge``: the same as the ``kubeedge`` command."""

from kubeedge.cli import main

main()
