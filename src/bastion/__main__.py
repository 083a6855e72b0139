"""`python -m bastion` runs the CLI, exactly as the `bastion` console script does."""

from bastion.cli.entry import main

main()
