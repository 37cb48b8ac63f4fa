"""`python -m jobstream`: the same as the `jobstream` command."""

from jobstream.consumers.cli import main

main()
