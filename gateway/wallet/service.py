"""The wallet's business logic, once for every channel: SMS commands, USSD menus and the STK applet.

A channel parses its text or menu choice into a command of
:mod:`simwallet.gateway.sms.commands`, wraps it in a
:class:`~.outcomes.ServiceRequest` keyed by its own idempotency key (``sms:<source
addr>:<smsc message id>``) and renders the :class:`~.outcomes.ServiceReply`
with :func:`simwallet.gateway.sms.catalogue.render`.

Theory of operation
-------------------
:meth:`WalletService.handle_batch` serves up to :data:`SERVICE_BATCH_MAX`
requests in one database transaction and a handful of statements:

1. **Decide**. Read the cards of every number the batch names (senders,
   top-up targets, payees), lock the PIN rows of the senders' customers
   (``FOR UPDATE`` in customer order on PostgreSQL; SQLite serialises writers
   with ``BEGIN IMMEDIATE``), read the stored replies of the batch's keys, and
   which of its money requests the ledger already holds. Then decide each
   request in batch order, so a customer's PIN tries count in order: a stored
   key is replayed; registration, card status, fields and PIN are checked;
   what needs the ledger becomes a transfer. Write the PIN counters and the
   opt-outs, and open the phone-credit accounts the top-ups need.
2. **Post** every transfer of the batch with one
   ``Ledger.post_batch_in`` (the ledger's batch, in this transaction: its
   account locks come after the PIN locks, every batch in the same order).
   Each transfer's idempotency key is the request key with the prefix
   ``svc:``, so posting again returns the first result.
3. **Answer**: one read of the wallets' balances (and the product tiers if a
   limit refused something), the replies of the postings, balances and
   histories, and one multi-row insert of every reply to keep; commit.

Balances in replies: the read after posting gives each wallet's balance now;
walking the batch backwards and taking out each posting's effect gives the
balance after each request. "Balance" is the available balance: posted less
the holds against it.

Crash safety. The batch commits whole or not at all: a crash, a lost
database or a conflict after the retries leaves nothing of it (no posting, no
PIN try, no reply), the channel redelivers and the batch is decided afresh.
Every posting commits with its stored reply, so a redelivery finds the reply
and replays it. Only the retention job (:meth:`WalletService.prune_replies`)
separates them: a redelivery after its reply was pruned finds the transfer in
step 1 (so the PIN is not asked again: no try is counted, and a wallet locked
meanwhile does not deny a payment that happened), step 2 returns the first
result, and the reply is built again. Anything unexpected answers
``unavailable`` and is not stored, so a redelivery runs it again; the log
names the request key and the error class, never a PIN.

Measured on this 2-core machine, one process, a durable throwaway PostgreSQL,
batches of 75 balance/top-up requests (the gateway bench's mix): about 4,400
requests/s, about 120 µs of the service's CPU and 100 µs of PostgreSQL's per
request; one request at a time about 230/s (a batch's twenty-odd statements
for each). ``wallet_replies`` grows with traffic: the
operator's retention job calls :meth:`WalletService.prune_replies`.

Decisions, where the brief leaves room:

* No wallet PIN set (a card registered, the service hall's ``wallet
  pin-set`` not yet done): ``pin_not_set`` (set one at a service hall), outcome
  ``no_pin``.
* A blocked card answers ``account_frozen`` (``card_blocked``); a retired
  card is no card (``unregistered``). STOP and START need no card: anyone may
  refuse marketing. HELP touches no table and is never stored.
* The STK channel's ``pin_verified_by_card`` skips the PIN check, but a wallet
  locked by wrong PINs on other channels stays locked.
* Top-ups credit the target customer's ``customer_airtime`` account, opened
  here if registration did not. The promotion 满百送30 (cards/promotions) is
  triggered by the kind ``airtime_topup`` itself, and the ledger pays its
  bonus to the customer_airtime account of the owner of the *debited* wallet
  (``posting._customer`` looks at the debit side first): the payer, also when
  the top-up is for another number. So the payer's phone-credit account is
  opened too, or the ledger would refuse the grant as unpayable; the reply
  shows the bonus (``topup_ok_bonus``) from the ledger result's caused rows.
* Payees: a P2P payee needs a registered card (its wallet is
  ``customer:<id>/customer_wallet``); a merchant code ``M123456`` pays the
  account ``merchant:M123456`` and a bill the account ``biller:<biller>``
  (``biller:water`` …), which the operator opens with those references; a
  missing one answers ``payee_unknown`` or ``biller_invalid``. The bill's
  account number is the transfer's memo.
* A maximum-balance refusal is the credited wallet's: on a P2P payment the
  payee's, answered ``payee_limit`` without the payee's limit (that is the
  payee's business); the payer's own limits answer ``limit_exceeded`` with
  the limit's name and amount.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.cards import CUSTOMER_PREFIX, CardRegistry, CardStatus
from simwallet.gateway.errors import GatewayError, RejectCode, RequestError
from simwallet.gateway.ledger.ledger import Ledger, wall_clock_us
from simwallet.gateway.ledger.model import Phase, Result
from simwallet.gateway.sms.catalogue import HISTORY_LINES_MAX, HistoryEntry, Lang, MessageId
from simwallet.gateway.sms.commands import (
    Balance,
    BankBalance,
    ChangePin,
    Help,
    History,
    Pay,
    PayeeKind,
    Start,
    Stop,
    TopUp,
    help_message_id,
)
from simwallet.gateway.store.tx import run_in_transaction
from simwallet.gateway.wallet import store
from simwallet.gateway.wallet.outcomes import (
    Outcome,
    ServiceReply,
    ServiceRequest,
    UnknownCustomer,
    WalletUsageError,
    ledger_key,
    reply,
    unavailable,
)
from simwallet.gateway.wallet.pins import PinHasher, PinRecord, PinResult, PinState, attempt, check_new_pin
from simwallet.gateway.wallet.replies import (
    CardRow,
    Money,
    Posting,
    Reading,
    balances_after,
    customer_wallet,
    field_error,
    history_entry,
    limit_fen,
    money_decision,
    posting_reply,
    reading_reply,
    refusal,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Requests per batch: a channel's window of outstanding MO messages fits; bounds locks and IN lists.
SERVICE_BATCH_MAX: Final = 256
# Attempts of one of the service's transactions after a conflict, and the first back-off.
TX_ATTEMPTS_MAX: Final = 8
TX_BACKOFF_S: Final = 0.002
# Ledger rows read for a history reply: holds and their resolutions are skipped, so read a few more.
HISTORY_SCAN_MAX: Final = 4 * HISTORY_LINES_MAX


Decision = ServiceReply | Posting | Reading


@dataclass
class _Batch:
    """What step 1 knows and changes while it decides a batch in order (fresh for every attempt)."""

    cards: dict[str, CardRow]
    pins: dict[str, PinRecord]
    stored: dict[str, ServiceReply]
    posted: set[str]
    counted: set[str] = field(default_factory=set)  # customers whose try counter changed
    new_pin: set[str] = field(default_factory=set)  # customers whose PIN changed (row exists)
    first_pin: set[str] = field(default_factory=set)  # customers whose first PIN an STK card set
    marketing: dict[str, bool] = field(default_factory=dict)  # msisdn -> opted out, last command wins


class WalletService:
    """Balance, top-up, pay, bills, bank balance, history, PIN policy and marketing opt-out, for every channel.

    ``pin_key`` is the HMAC key of the PIN verifiers (:func:`~.pins.pin_verification_key`);
    ``clock`` gives microseconds since the epoch (UTC); ``after_post`` is a test hook called right
    after the ledger posted a batch, before the replies are stored: an exception it raises is not
    caught, and stands for the process dying there.
    """

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        registry: CardRegistry,
        *,
        pin_key: bytes,
        clock: Callable[[], int] = wall_clock_us,
        after_post: Callable[[], None] | None = None,
    ) -> None:
        if ledger.engine.url != engine.url or registry.engine.url != engine.url:
            raise WalletUsageError("the wallet service, the ledger and the card registry must use the same database")
        self.engine = engine
        self._ledger = ledger
        self._registry = registry
        self._hasher = PinHasher(pin_key)
        self._clock = clock
        self._after_post = after_post

    # -- serving -------------------------------------------------------------------------

    def handle(self, request: ServiceRequest) -> ServiceReply:
        return self.handle_batch([request])[0]

    def handle_batch(self, requests: Sequence[ServiceRequest]) -> list[ServiceReply]:
        """One reply per request, in order; see the module docstring for the statements this costs."""
        batch = list(requests)
        if len(batch) > SERVICE_BATCH_MAX:
            raise WalletUsageError(f"a batch holds at most SERVICE_BATCH_MAX = {SERVICE_BATCH_MAX} requests")
        if not all(isinstance(r, ServiceRequest) for r in batch):
            raise WalletUsageError("handle_batch takes ServiceRequest values")
        out: list[ServiceReply | None] = [None] * len(batch)
        first: dict[str, int] = {}
        work: list[int] = []
        for i, request in enumerate(batch):
            if isinstance(request.command, Help):
                out[i] = reply(help_message_id(request.command.topic), request.lang, Outcome.OK)
            elif request.key not in first:
                first[request.key] = i
                work.append(i)
        if work:
            self._serve(batch, work, out)
        replies: list[ServiceReply] = []
        for i, request in enumerate(batch):
            answer = out[i]
            if answer is None:  # the same key again in this batch: the first one's answer
                answer = out[first[request.key]]
                assert answer is not None
                answer = replace(answer, replayed=True) if answer.stored else answer
            replies.append(answer)
        return replies

    def _serve(self, batch: list[ServiceRequest], work: list[int], out: list[ServiceReply | None]) -> None:
        requests = [batch[i] for i in work]
        now = self._clock()
        try:
            answers = self._tx(lambda conn: self._serve_in(conn, requests, now), "wallet batch")
        except _Died as died:
            raise died.exc from None
        except Exception as exc:  # anything: the batch is answered "unavailable", nothing of it is stored
            _log_failure("serving a batch", requests, exc)
            answers = [unavailable(r.lang) for r in requests]
        for i, answer in zip(work, answers, strict=True):
            out[i] = answer

    def _serve_in(self, conn: sa.Connection, requests: list[ServiceRequest], now: int) -> list[ServiceReply]:
        """Steps 1-3 in the batch's one transaction; run again from the start after a conflict."""
        decisions = self._decide(conn, requests, now)
        postings = [(k, d) for k, d in enumerate(decisions) if isinstance(d, Posting)]
        results: dict[int, Result] = {}
        if postings:
            posted = self._ledger.post_batch_in(conn, [d.transfer for _, d in postings])
            results = {k: result for (k, _), result in zip(postings, posted, strict=True)}
            if self._after_post is not None:
                try:
                    self._after_post()
                except BaseException as exc:  # the test hook's "the process died here": past every handler
                    raise _Died(exc) from exc
        answers = [d if isinstance(d, ServiceReply) else None for d in decisions]
        pending = [(k, d) for k, d in enumerate(decisions) if not isinstance(d, ServiceReply)]
        if pending:
            self._answer(conn, pending, results, answers)
        final = [answer for answer in answers if answer is not None]
        assert len(final) == len(requests)  # _answer answers every pending request
        store.insert_replies(
            conn,
            [
                store.ReplyRow(r.key, r.channel.value, r.msisdn, a, now)
                for r, a in zip(requests, final, strict=True)
                if a.stored and not a.replayed
            ],
        )
        return final

    # -- step 1: decide --------------------------------------------------------------------

    def _decide(self, conn: sa.Connection, requests: list[ServiceRequest], now: int) -> list[Decision]:
        named = {r.msisdn for r in requests}
        for r in requests:
            cmd = r.command
            if isinstance(cmd, TopUp) and isinstance(cmd.target, str):
                named.add(cmd.target)
            elif isinstance(cmd, Pay) and cmd.payee_kind is PayeeKind.MSISDN and isinstance(cmd.payee, str):
                named.add(cmd.payee)
        cards = store.cards_by_msisdn(conn, named)
        senders = {card.customer_ref for r in requests if (card := cards.get(r.msisdn)) is not None}
        pins = store.lock_pins(conn, senders)
        stored = store.stored_replies(conn, {r.key for r in requests})
        money = {ledger_key(r.key) for r in requests if isinstance(r.command, Money) and r.key not in stored}
        state = _Batch(cards, pins, stored, store.posted_ledger_keys(conn, money))
        decisions = [self._decide_one(r, state) for r in requests]
        store.update_pins(conn, [state.pins[c] for c in sorted(state.counted | state.new_pin)], now, new_pin=state.new_pin)
        for customer in sorted(state.first_pin):
            store.upsert_pin(conn, state.pins[customer], now)
        store.opt_out(conn, {m for m, out in state.marketing.items() if out}, now)
        store.opt_in(conn, {m for m, out in state.marketing.items() if not out})
        owners = {owner for d in decisions if isinstance(d, Posting) for owner in d.airtime_owners}
        store.open_airtime_accounts(conn, owners, now)  # those that exist are left as they are
        return decisions

    def _decide_one(self, request: ServiceRequest, state: _Batch) -> Decision:
        try:
            return self._decide_checked(request, state)
        except Exception as exc:  # a bug or a PIN key mismatch: unavailable, not stored, logged
            _log_failure("deciding a request", [request], exc)
            return unavailable(request.lang)

    def _decide_checked(self, request: ServiceRequest, state: _Batch) -> Decision:
        lang, cmd = request.lang, request.command
        if request.key in state.stored:
            return state.stored[request.key]
        if isinstance(cmd, Stop | Start):
            state.marketing[request.msisdn] = isinstance(cmd, Stop)
            return reply(MessageId.STOPPED if isinstance(cmd, Stop) else MessageId.STARTED, lang, Outcome.OK)
        card = state.cards.get(request.msisdn)
        refused = _card_refusal(card, lang) or field_error(cmd, lang, pin_checked=request.pin_verified_by_card)
        if refused is not None or card is None:
            return refused or reply(MessageId.UNREGISTERED, lang, Outcome.UNREGISTERED)
        # A money request the ledger already holds was answered before a crash: no PIN try again.
        if not (isinstance(cmd, Money) and ledger_key(request.key) in state.posted):
            refused = self._check_pin(request, card.customer_ref, state)
            if refused is not None:
                return refused
        return self._command(request, card.customer_ref, state)

    def _check_pin(self, request: ServiceRequest, customer: str, state: _Batch) -> ServiceReply | None:
        """None when the request may go on; otherwise the refusal. Moves the try counter in ``state``."""
        cmd, lang = request.command, request.lang
        record = state.pins.get(customer)
        if record is None:
            return None if request.pin_verified_by_card else reply(MessageId.PIN_NOT_SET, lang, Outcome.NO_PIN)
        if request.pin_verified_by_card:
            return reply(MessageId.WALLET_LOCKED, lang, Outcome.LOCKED) if record.locked else None
        pin = cmd.old_pin if isinstance(cmd, ChangePin) else getattr(cmd, "pin", "")
        tried = attempt(self._hasher, record, pin)
        if tried.record is not record:
            state.pins[customer] = tried.record
            state.counted.add(customer)
        if tried.result is PinResult.RIGHT:
            return None
        if tried.result is PinResult.WRONG:
            return reply(MessageId.PIN_WRONG, lang, Outcome.PIN_WRONG, {"tries_left": tried.record.tries_left})
        return reply(MessageId.WALLET_LOCKED, lang, Outcome.LOCKED)

    def _command(self, request: ServiceRequest, customer: str, state: _Batch) -> Decision:
        cmd, lang = request.command, request.lang
        if isinstance(cmd, Balance | History):
            return Reading(request, customer_wallet(customer))
        if isinstance(cmd, BankBalance):
            return reply(MessageId.BANK_NOT_LINKED, lang, Outcome.REFUSED)
        if isinstance(cmd, ChangePin):
            (state.new_pin if customer in state.pins else state.first_pin).add(customer)
            state.pins[customer] = self._hasher.record(customer, cmd.new_pin)
            return reply(MessageId.PIN_CHANGED, lang, Outcome.OK)
        try:
            return money_decision(request, customer, state.cards)
        except RequestError as exc:  # refused while building the transfer (paying oneself)
            return _refused(request, exc, refusal(request, exc, balance=0, limit_fen=None))

    # -- step 3: answer --------------------------------------------------------------------

    def _answer(
        self,
        conn: sa.Connection,
        pending: list[tuple[int, Posting | Reading]],
        results: dict[int, Result],
        answers: list[ServiceReply | None],
    ) -> None:
        histories = self._histories(conn, pending, answers)
        refs = {d.wallet for _, d in pending} | {d.payee_wallet for _, d in pending if isinstance(d, Posting) and d.payee_wallet}
        limited = any(r.error is not None and r.error.reject_code is RejectCode.LIMIT_EXCEEDED for r in results.values())
        wallets = store.wallet_balances(conn, refs)
        tiers = store.tiers(conn) if limited else {}
        balances = balances_after(pending, results, wallets)
        for k, d in pending:
            request = d.request
            if answers[k] is not None:
                continue
            if d.wallet not in wallets:
                _log_failure("answering", [request], LookupError("the card's customer has no wallet account"))
                answers[k] = unavailable(request.lang)
            elif isinstance(d, Reading):
                answers[k] = reading_reply(request, balances[k], histories.get(k, ()))
            else:
                result = results[k]
                limit = limit_fen(d, result.error, wallets, tiers)
                answers[k] = _refused(request, result.error, posting_reply(d, result, balances[k], limit))

    def _histories(
        self, conn: sa.Connection, pending: list[tuple[int, Posting | Reading]], answers: list[ServiceReply | None]
    ) -> dict[int, tuple[HistoryEntry, ...]]:
        """The history lines of the batch's history requests (``ledger.history``: a few statements each)."""
        histories: dict[int, tuple[HistoryEntry, ...]] = {}
        for k, d in pending:
            if isinstance(d, Reading) and isinstance(d.request.command, History):
                try:
                    lines = self._ledger.history(d.wallet, limit=HISTORY_SCAN_MAX, conn=conn)
                except RequestError as exc:  # no such wallet: a row missing, not a failed statement
                    _log_failure("reading a history", [d.request], exc)
                    answers[k] = unavailable(d.request.lang)
                    continue
                moved = [line for line in lines if line.transfer.phase in (Phase.SINGLE, Phase.POST)]
                histories[k] = tuple(history_entry(ln.transfer, debited=ln.direction == "debit") for ln in moved[:HISTORY_LINES_MAX])
        return histories

    # -- service hall ------------------------------------------------------------------------

    def set_pin(self, who: str, pin: str) -> PinState:
        """Set the wallet PIN of a customer (``customer:<id>``) or of a number's customer; resets the tries."""
        new = check_new_pin(pin)
        customer = self._customer(who)
        record = self._hasher.record(customer, new)
        self._tx(lambda conn: store.upsert_pin(conn, record, self._clock()), "setting a wallet PIN")
        return PinState.of(customer, record)

    def unlock(self, msisdn: str) -> PinState:
        """Reset the wrong-PIN count of a number's wallet (service hall, after checking the holder's ID)."""
        customer = self._customer(msisdn)

        def work(conn: sa.Connection) -> PinState:
            record = store.pin_row(conn, customer)
            if record is not None and record.wrong_tries:
                record = record.unlocked()
                store.update_pins(conn, [record], self._clock())
            return PinState.of(customer, record)

        return self._tx(work, "unlocking a wallet")

    def pin_state(self, msisdn: str) -> PinState:
        customer = self._customer(msisdn)
        with self.engine.connect().execution_options(simwallet_readonly=True) as conn:
            return PinState.of(customer, store.pin_row(conn, customer))

    def marketing_opted_out(self, msisdn: str) -> bool:
        """Whether the number sent STOP (and no START since): campaign senders skip it."""
        with self.engine.connect().execution_options(simwallet_readonly=True) as conn:
            return msisdn in store.opted_out(conn, {msisdn})

    def prune_replies(self, older_than_us: int) -> int:
        """Delete stored replies older than ``older_than_us`` (the operator's retention job); returns how many.

        A request redelivered after its reply was pruned is answered again from the ledger's idempotency
        keys (no second posting), but may count a wrong PIN again: keep replies longer than the SMSC's
        redelivery window (days, not minutes).
        """
        total = 0
        while True:
            deleted = self._tx(lambda conn: store.prune_replies(conn, older_than_us), "pruning wallet replies")
            total += deleted
            if deleted < store.PRUNE_CHUNK_MAX:
                return total

    def _customer(self, who: str) -> str:
        if isinstance(who, str) and who.startswith(CUSTOMER_PREFIX):
            with self.engine.connect().execution_options(simwallet_readonly=True) as conn:
                if not store.customer_has_card(conn, who):
                    raise UnknownCustomer(f"no card is registered for {who}")
            return who
        try:
            card = self._registry.by_msisdn(who)
        except RequestError as exc:
            raise WalletUsageError(f"not an MSISDN or a customer reference ({exc.code})") from None
        if card is None:
            raise UnknownCustomer("no card is registered for that number")
        return card.customer_ref

    def _tx(self, work: Callable[[sa.Connection], T], what: str) -> T:
        return run_in_transaction(self.engine, work, attempts_max=TX_ATTEMPTS_MAX, backoff_s=TX_BACKOFF_S, what=what)


class _Died(BaseException):
    """Carries the ``after_post`` hook's exception out of the transaction (rolled back) and past the batch's handler."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def _card_refusal(card: CardRow | None, lang: Lang) -> ServiceReply | None:
    """No card, a retired card (no wallet here any more), a blocked one (lost or stolen: frozen)."""
    if card is None or card.status is CardStatus.RETIRED:
        return reply(MessageId.UNREGISTERED, lang, Outcome.UNREGISTERED)
    if card.status is CardStatus.BLOCKED:
        return reply(MessageId.ACCOUNT_FROZEN, lang, Outcome.CARD_BLOCKED)
    return None


def _refused(request: ServiceRequest, error: RequestError | None, answer: ServiceReply) -> ServiceReply:
    """``answer``, after logging a refusal that it could not map (answered ``unavailable``)."""
    if answer.outcome is Outcome.UNAVAILABLE and error is not None:
        _log_failure("mapping a ledger refusal", [request], error)
    return answer


def _log_failure(what: str, requests: Sequence[ServiceRequest], exc: BaseException) -> None:
    """Log trouble by request key and error class and code: never a message that could quote SQL parameters."""
    keys = ", ".join(r.key for r in requests[:4]) + (f" and {len(requests) - 4} more" if len(requests) > 4 else "")
    bug = not isinstance(exc, GatewayError | sa.exc.SQLAlchemyError | LookupError)
    logger.error("wallet service: %s failed for %s: %s", what, keys, _describe(exc), exc_info=exc if bug else None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return f"{type(exc).__name__} ({exc.code})"
    if isinstance(exc, sa.exc.DBAPIError):
        return f"{type(exc).__name__} (sqlstate {getattr(exc.orig, 'sqlstate', None)})"
    return type(exc).__name__
