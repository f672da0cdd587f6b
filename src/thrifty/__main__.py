"""``python -m thrifty`` runs the command-line interface."""

from .cli import main

main()
