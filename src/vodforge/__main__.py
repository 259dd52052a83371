"""``python -m vodforge`` runs the CLI."""

from vodforge.cli import main

main()
