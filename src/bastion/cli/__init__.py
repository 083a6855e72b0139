"""The `bastion` command line: one thin module per command group."""
