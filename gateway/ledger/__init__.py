"""simwallet.gateway.ledger: the double-entry ledger (model, limits, posting, database driver, verify)."""
