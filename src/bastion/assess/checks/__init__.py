"""Built-in checks; each module exposes `CHECK` and is listed in `bastion.assess.registry`."""
