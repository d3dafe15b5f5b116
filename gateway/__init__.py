"""simwallet.gateway: the backend (transaction core, store, SMPP services, banks, OTA)."""
