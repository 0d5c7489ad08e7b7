"""``python -m aufer`` (and ``torchrun ... -m aufer train RECIPE``) runs the command line."""

from aufer.cli import main

main()
