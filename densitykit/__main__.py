"""``python -m densitykit`` (also what ``torchrun -m densitykit`` runs)."""

from densitykit.cli import main

main()
