"""simwallet.gateway.wallet: the wallet service every channel (SMS, USSD, STK) hands its parsed commands to.

* :mod:`.service` — :class:`WalletService`: balance, top-up, pay, bills, bank
  balance, history, PIN policy and marketing opt-out, served in batches with
  idempotent, stored replies.
* :mod:`.pins` — the PIN verifier (a keyed hash), its key, and the try counter.
* :mod:`.outcomes` — requests, replies, outcomes, the package's errors, stored parameters.
* :mod:`.replies` — replies from decisions and ledger results (pure).
* :mod:`.store` — the service's table access.
"""

from simwallet.gateway.wallet.outcomes import (
    REQUEST_KEY_LEN_MAX,
    Outcome,
    PinKeyMismatch,
    ServiceReply,
    ServiceRequest,
    UnknownCustomer,
    WalletError,
    WalletUsageError,
)
from simwallet.gateway.wallet.pins import WALLET_PIN_TRIES, PinState, pin_verification_key
from simwallet.gateway.wallet.service import SERVICE_BATCH_MAX, WalletService

__all__ = [
    "REQUEST_KEY_LEN_MAX",
    "SERVICE_BATCH_MAX",
    "WALLET_PIN_TRIES",
    "Outcome",
    "PinKeyMismatch",
    "PinState",
    "ServiceReply",
    "ServiceRequest",
    "UnknownCustomer",
    "WalletError",
    "WalletService",
    "WalletUsageError",
    "pin_verification_key",
]
