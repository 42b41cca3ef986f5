"""`python -m bitmatch`: the `bitmatch` command, for a checkout whose console script is not installed."""

from bitmatch.cli import main

main()
