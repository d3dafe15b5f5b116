"""simwallet.provisioning: the ``simwallet`` command line and the PC/SC side of personalization."""
