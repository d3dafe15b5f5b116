"""Bad input to the ledger: each is refused with a specific error naming the field, and nothing is written.

Every ledger test runs on SQLite and on PostgreSQL (``db_url``). "Nothing
written" is checked on the raw tables: the account rows (sums, statuses and
the limit counters), the number of transfer rows and the open holds are the
same before and after the refusal, and ``verify_ledger`` still passes.

The amount codec of :mod:`simwallet.gateway.money` is tested at the end:
exhaustively over a range, with hypothesis over its whole domain, and with
junk text, of which only :class:`RequestError` may ever escape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st
from ledger_book import T0_US, Book, us
from sqlalchemy.engine import Engine

from simwallet.gateway import money
from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.ledger import BATCH_LEN_MAX, AccountSpec
from simwallet.gateway.ledger.limits import Tier
from simwallet.gateway.ledger.model import (
    ACCOUNT_REF_LEN_MAX,
    IDEMPOTENCY_KEY_LEN_MAX,
    LINKED_CHAIN_LEN_MAX,
    MEMO_LEN_MAX,
    PENDING_TIMEOUT_S_MAX,
    AccountFlags,
    AccountKind,
    AccountStatus,
    Linked,
    PostPending,
    Request,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
)
from simwallet.gateway.ledger.posting import SUM_MAX
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.money import AMOUNT_FEN_MAX, AMOUNT_TEXT_LEN_MAX, format_amount, parse_amount
from simwallet.gateway.store.schema import accounts, holds, transfers

DEPOSIT = TransferKind.DEPOSIT
P2P = TransferKind.P2P




def snapshot(engine: Engine) -> tuple[object, ...]:
    """Everything a refused request must leave alone, read from the tables themselves."""
    with engine.connect() as conn:
        account_rows = [tuple(r) for r in conn.execute(sa.select(accounts).order_by(accounts.c.id))]
        n_transfers = conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()
        hold_rows = [tuple(r) for r in conn.execute(sa.select(holds).order_by(holds.c.transfer_id))]
    return account_rows, n_transfers, hold_rows


def refused(book: Book, make: Callable[[], Request | Sequence[Request | Linked]], code: RejectCode, field: str) -> RequestError:
    """Build and post a request (or a batch); it must be refused with ``code`` naming ``field``, writing nothing."""
    before = snapshot(book.engine)
    with pytest.raises(RequestError) as info:
        made = make()
        if isinstance(made, Sequence):
            results = book.ledger.post_batch(made)
            errors = [r.error for r in results if r.error is not None]
            assert len(errors) == len(results), results
            raise errors[0]
        book.ledger.post_one(made)
    error = info.value
    assert (error.reject_code, error.field) == (code, field), str(error)
    assert error.code == code.value
    assert snapshot(book.engine) == before
    assert verify_ledger(book.engine).ok
    return error


def balance(book: Book, account: int | str) -> int:
    return book.ledger.account(account).balance


def pay(book: Book, key: str, debit: int | str, credit: int | str, amount: int, **kw: Any) -> Transfer:
    return Transfer(key, debit, credit, amount, kw.pop("kind", P2P), **kw)


# --- Amounts --------------------------------------------------------------------------

BAD_AMOUNTS = [
    pytest.param(0, RejectCode.AMOUNT_MUST_BE_POSITIVE, id="zero"),
    pytest.param(-1, RejectCode.AMOUNT_MUST_BE_POSITIVE, id="minus-one-fen"),
    pytest.param(-AMOUNT_FEN_MAX, RejectCode.AMOUNT_MUST_BE_POSITIVE, id="minus-max"),
    pytest.param(AMOUNT_FEN_MAX + 1, RejectCode.AMOUNT_TOO_LARGE, id="max-plus-one"),
    pytest.param(2**63, RejectCode.AMOUNT_TOO_LARGE, id="beyond-int64"),
    pytest.param(2**100, RejectCode.AMOUNT_TOO_LARGE, id="huge"),
    pytest.param(100.0, RejectCode.AMOUNT_MALFORMED, id="float-whole"),
    pytest.param(0.5, RejectCode.AMOUNT_MALFORMED, id="float-fraction"),
    pytest.param(float("nan"), RejectCode.AMOUNT_MALFORMED, id="float-nan"),
    pytest.param(True, RejectCode.AMOUNT_MALFORMED, id="bool-true"),
    pytest.param(False, RejectCode.AMOUNT_MALFORMED, id="bool-false"),
    pytest.param("100", RejectCode.AMOUNT_MALFORMED, id="text"),
    pytest.param(Decimal(100), RejectCode.AMOUNT_MALFORMED, id="decimal"),
    pytest.param(None, RejectCode.AMOUNT_MALFORMED, id="none"),
]


@pytest.mark.parametrize(("amount", "code"), BAD_AMOUNTS)
def test_bad_amounts_are_refused_when_the_request_is_built(amount: object, code: RejectCode) -> None:
    with pytest.raises(RequestError) as info:
        Transfer("k", 1, 2, amount, DEPOSIT)
    assert (info.value.reject_code, info.value.field) == (code, "amount")


def test_bad_amounts_post_nothing(book: Book) -> None:
    for param in BAD_AMOUNTS:
        amount, code = param.values
        refused(book, lambda a=amount: pay(book, "bad-amount", book.wallet, book.other, a), code, "amount")
    # Fractional fen never become an int: the text is refused before a request exists.
    refused(book, lambda: pay(book, "frac", book.wallet, book.other, parse_amount("1.234")), RejectCode.AMOUNT_NOT_WHOLE_FEN, "amount")
    refused(book, lambda: pay(book, "neg", book.wallet, book.other, parse_amount("-1.00")), RejectCode.AMOUNT_MUST_BE_POSITIVE, "amount")
    refused(book, lambda: pay(book, "zero", book.wallet, book.other, parse_amount("0.00")), RejectCode.AMOUNT_MUST_BE_POSITIVE, "amount")
    # The largest amount itself is fine between accounts without a balance flag.
    sink = book.ledger.open_account(AccountKind.FEE_INCOME, "operator", ref="fees")
    assert sink.flags == AccountFlags.NONE
    book.ledger.post_one(pay(book, "max", book.bank, sink.id, AMOUNT_FEN_MAX, kind=TransferKind.ADJUSTMENT))
    assert balance(book, sink.id) == AMOUNT_FEN_MAX


def _seed_huge_transfer(engine: Engine, debit: int, credit: int, amount: int) -> None:
    """Write one transfer row of ``amount`` and the cached sums that go with it.

    Reaching 2**63 fen through the API takes 922,338 transfers of the largest
    amount; one consistent row gives the same account state in milliseconds
    (``verify_ledger`` checks that it is consistent).
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            new_id = conn.execute(sa.text("SELECT nextval('transfer_id_seq')")).scalar_one()
        else:
            new_id = conn.execute(sa.select(sa.func.coalesce(sa.func.max(transfers.c.id), 0) + 1)).scalar_one()
        conn.execute(transfers.insert().values(
            id=new_id, idempotency_key=f"seed-{new_id}", body_hash=bytes(16), debit_account_id=debit, credit_account_id=credit,
            amount=amount, currency="CNY", kind="adjustment", channel="system", phase="single", ts_us=T0_US, memo="",
        ))
        conn.execute(accounts.update().where(accounts.c.id == debit).values(debits_posted=accounts.c.debits_posted + amount))
        conn.execute(accounts.update().where(accounts.c.id == credit).values(credits_posted=accounts.c.credits_posted + amount))


def test_sums_that_would_overflow_int64_are_refused(book: Book) -> None:
    ledger = book.ledger
    # Accounts without a balance flag, so that their sums can grow without funds.
    big_out, big_in, plain = (ledger.open_account(AccountKind.SUSPENSE, "operator", ref=ref, flags=AccountFlags.NONE).id
                              for ref in ("big-out", "big-in", "plain"))
    headroom = 1_000
    _seed_huge_transfer(book.engine, big_out, big_in, SUM_MAX - headroom)
    # The whole ledger's debits now exceed 2**63 - 1 (the seed plus the book's deposit),
    # while each account's own sums still fit: verify must cope with that.
    assert verify_ledger(book.engine).ok

    adj = TransferKind.ADJUSTMENT
    refused(book, lambda: pay(book, "debit-side", big_out, plain, headroom + 1, kind=adj), RejectCode.OVERFLOW, "amount")
    refused(book, lambda: pay(book, "credit-side", plain, big_in, headroom + 1, kind=adj), RejectCode.OVERFLOW, "amount")
    # Holds count: pending plus posted may not pass the limit either.
    hold = ledger.post_one(pay(book, "hold", big_out, plain, headroom, kind=adj, pending=True, timeout_s=60))
    refused(book, lambda: pay(book, "over-hold", big_out, plain, 1, kind=adj), RejectCode.OVERFLOW, "amount")
    ledger.post_one(VoidPending("void", hold.id))
    # Up to exactly 2**63 - 1 is fine, on both sides.
    ledger.post_one(pay(book, "to-the-edge", big_out, plain, headroom, kind=adj))
    ledger.post_one(pay(book, "to-the-edge-in", plain, big_in, headroom, kind=adj))
    assert ledger.account(big_out).debits_posted == SUM_MAX
    assert ledger.account(big_in).credits_posted == SUM_MAX
    refused(book, lambda: pay(book, "one-more", big_out, plain, 1, kind=adj), RejectCode.OVERFLOW, "amount")
    refused(book, lambda: pay(book, "one-more-in", plain, big_in, 1, kind=adj), RejectCode.OVERFLOW, "amount")
    assert verify_ledger(book.engine).ok


# --- Accounts -------------------------------------------------------------------------


def test_unknown_accounts_are_refused(book: Book) -> None:
    w, o = book.wallet, book.other
    for unknown in (999_999, "customer:nobody/customer_wallet", 2**63 - 1):
        refused(book, lambda u=unknown: pay(book, "k", u, o, 100), RejectCode.ACCOUNT_NOT_FOUND, "debit_account")
        refused(book, lambda u=unknown: pay(book, "k", w, u, 100), RejectCode.ACCOUNT_NOT_FOUND, "credit_account")
    # Ids that no row can have: not positive, or beyond the signed 64-bit id columns.
    for impossible in (0, -1, 2**63, 2**64):
        refused(book, lambda u=impossible: pay(book, "k", u, o, 100), RejectCode.ACCOUNT_NOT_FOUND, "debit_account")
        refused(book, lambda u=impossible: pay(book, "k", w, u, 100), RejectCode.ACCOUNT_NOT_FOUND, "credit_account")
    # Neither an id nor a reference.
    for junk in (True, None, 1.0, "", "x" * (ACCOUNT_REF_LEN_MAX + 1)):
        refused(book, lambda u=junk: pay(book, "k", u, o, 100), RejectCode.FIELD_INVALID, "debit_account")
        refused(book, lambda u=junk: pay(book, "k", w, u, 100), RejectCode.FIELD_INVALID, "credit_account")
    # The known accounts by reference do work.
    ledger = book.ledger
    ledger.post_one(pay(book, "by-ref", "customer:C1/customer_wallet", "customer:C2/customer_wallet", 100))
    assert (balance(book, w), balance(book, o)) == (9_900, 100)


def test_frozen_account_is_refused_on_either_side(book: Book) -> None:
    book.ledger.set_status(book.wallet, AccountStatus.FROZEN)
    refused(book, lambda: pay(book, "out", book.wallet, book.other, 100), RejectCode.ACCOUNT_FROZEN, "debit_account")
    refused(book, lambda: pay(book, "in", book.bank, book.wallet, 100, kind=DEPOSIT), RejectCode.ACCOUNT_FROZEN, "credit_account")
    refused(book, lambda: pay(book, "hold", book.wallet, book.other, 100, pending=True, timeout_s=60),
            RejectCode.ACCOUNT_FROZEN, "debit_account")
    book.ledger.set_status(book.wallet, AccountStatus.OPEN)
    book.ledger.post_one(pay(book, "out", book.wallet, book.other, 100))
    assert balance(book, book.other) == 100


def test_closed_account_is_refused_on_either_side(book: Book) -> None:
    closed = book.ledger.open_account(AccountKind.CUSTOMER_WALLET, "customer:C3").id
    book.ledger.set_status(closed, AccountStatus.CLOSED)
    refused(book, lambda: pay(book, "in", book.bank, closed, 100, kind=DEPOSIT), RejectCode.ACCOUNT_CLOSED, "credit_account")
    refused(book, lambda: pay(book, "out", closed, book.other, 100), RejectCode.ACCOUNT_CLOSED, "debit_account")
    # Closing is final.
    with pytest.raises(RequestError) as info:
        book.ledger.set_status(closed, AccountStatus.OPEN)
    assert (info.value.reject_code, info.value.field) == (RejectCode.ACCOUNT_CLOSED, "status")


def test_currency_mismatch_is_refused(book: Book) -> None:
    refused(book, lambda: pay(book, "usd", book.wallet, book.other, 100, currency="USD"), RejectCode.CURRENCY_MISMATCH, "currency")
    refused(book, lambda: pay(book, "usd", book.bank, book.wallet, 100, currency="USD"), RejectCode.CURRENCY_MISMATCH, "currency")
    refused(book, lambda: pay(book, "lower", book.wallet, book.other, 100, currency="cny"), RejectCode.CURRENCY_MISMATCH, "currency")
    # Only CNY accounts can be opened.
    before = snapshot(book.engine)
    with pytest.raises(RequestError) as info:
        book.ledger.open_account(AccountKind.CUSTOMER_WALLET, "customer:U1", currency="USD")
    assert (info.value.reject_code, info.value.field) == (RejectCode.CURRENCY_MISMATCH, "currency")
    assert snapshot(book.engine) == before


def test_same_account_on_both_sides_is_refused(book: Book) -> None:
    refused(book, lambda: pay(book, "self", book.wallet, book.wallet, 100), RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")
    ref = book.ledger.account(book.wallet).ref
    refused(book, lambda: pay(book, "self", book.wallet, ref, 100), RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")
    refused(book, lambda: pay(book, "self", ref, book.wallet, 100), RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")
    refused(book, lambda: pay(book, "self", ref, ref, 100), RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account")


def test_insufficient_funds_are_refused(book: Book) -> None:
    refused(book, lambda: pay(book, "over", book.wallet, book.other, 10_001), RejectCode.EXCEEDS_CREDITS, "debit_account")
    book.ledger.post_one(pay(book, "hold", book.wallet, book.merchant, 6_000, pending=True, timeout_s=60))
    # The hold is taken out of what is available.
    refused(book, lambda: pay(book, "over", book.wallet, book.other, 4_001), RejectCode.EXCEEDS_CREDITS, "debit_account")
    book.ledger.post_one(pay(book, "rest", book.wallet, book.other, 4_000))
    assert book.ledger.account(book.wallet).available == 0


def test_bad_account_specs_open_nothing(book: Book) -> None:
    ledger = book.ledger
    cases = [
        (AccountSpec(AccountKind.CUSTOMER_WALLET, ""), RejectCode.FIELD_INVALID, "owner"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "x" * 65), RejectCode.FIELD_INVALID, "owner"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:\n"), RejectCode.FIELD_INVALID, "owner"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C9", ref="12345"), RejectCode.FIELD_INVALID, "ref"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C9", ref="r" * (ACCOUNT_REF_LEN_MAX + 1)), RejectCode.FIELD_INVALID, "ref"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C9", tier="gold"), RejectCode.FIELD_INVALID, "tier"),
        (AccountSpec(AccountKind.MERCHANT, "merchant:M9", tier="basic"), RejectCode.FIELD_INVALID, "tier"),
        (AccountSpec(AccountKind.SUSPENSE, "operator", flags=AccountFlags(3)), RejectCode.FIELD_INVALID, "flags"),
        (AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C1"), RejectCode.ACCOUNT_EXISTS, "ref"),
    ]
    for spec, code, field in cases:
        before = snapshot(ledger.engine)
        with pytest.raises(RequestError) as info:
            # A valid spec beside the bad one is not opened either.
            ledger.open_accounts([AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:ok"), spec])
        assert (info.value.reject_code, info.value.field) == (code, field), (spec, str(info.value))
        assert snapshot(ledger.engine) == before, spec


# --- Limits of product tiers ------------------------------------------------------------

SMALL = Tier("small", per_txn_max=5_000, per_day_max=8_000, per_month_max=20_000, balance_max=30_000, description="for tests")


def tiered(book: Book, name: str, tier: Tier = SMALL, funds: int = 0) -> int:
    book.ledger.set_tier(tier)
    wallet = book.ledger.open_account(AccountKind.CUSTOMER_WALLET, f"customer:{name}", tier=tier.name).id
    if funds:
        book.ledger.post_one(pay(book, f"fund-{name}", book.bank, wallet, funds, kind=DEPOSIT))
    return wallet


def test_default_tiers_are_seeded_by_the_migration(book: Book) -> None:
    got = {t.name: (t.per_txn_max, t.per_day_max, t.per_month_max, t.balance_max) for t in book.ledger.tiers()}
    assert got == {
        "basic": (100_000, 200_000, 500_000, 100_000),
        "verified": (500_000, 1_000_000, 10_000_000, 2_000_000),
        "premium": (5_000_000, 10_000_000, 100_000_000, None),
    }


def test_basic_tier_limits_apply(book: Book) -> None:
    w = tiered(book, "B1", Tier("basic", 100_000, 200_000, 500_000, 100_000), funds=100_000)
    assert book.ledger.account(w).tier == "basic"
    refused(book, lambda: pay(book, "in", book.bank, w, 1, kind=DEPOSIT), RejectCode.LIMIT_EXCEEDED, "limit.balance")
    book.ledger.post_one(pay(book, "all", w, book.merchant, 100_000, kind=TransferKind.MERCHANT_PAYMENT))


def test_per_transaction_limit(book: Book) -> None:
    w = tiered(book, "T1", funds=30_000)
    refused(book, lambda: pay(book, "big", w, book.merchant, 5_001), RejectCode.LIMIT_EXCEEDED, "limit.per_txn")
    refused(book, lambda: pay(book, "big-hold", w, book.merchant, 5_001, pending=True, timeout_s=60),
            RejectCode.LIMIT_EXCEEDED, "limit.per_txn")
    # The per-transaction limit is checked before the funds.
    refused(book, lambda: pay(book, "huge", w, book.merchant, 40_000), RejectCode.LIMIT_EXCEEDED, "limit.per_txn")
    book.ledger.post_one(pay(book, "ok", w, book.merchant, 5_000))
    # Money arriving is not limited per transaction, only by the balance.
    book.ledger.post_one(pay(book, "in", book.bank, w, 5_000, kind=DEPOSIT))
    assert balance(book, w) == 30_000


def test_per_day_limit_resets_at_midnight_in_shanghai(book: Book) -> None:
    w = tiered(book, "D1", funds=30_000)
    book.clock.now_us = us(2026, 3, 10, 15, 0, 0)  # 23:00 in Beijing
    book.ledger.post_one(pay(book, "a", w, book.merchant, 5_000))
    book.ledger.post_one(pay(book, "b", w, book.merchant, 2_999))
    book.clock.now_us = us(2026, 3, 10, 15, 59, 59)  # 23:59:59
    book.ledger.post_one(pay(book, "c", w, book.merchant, 1))
    refused(book, lambda: pay(book, "d", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    refused(book, lambda: pay(book, "d", w, book.merchant, 1, pending=True, timeout_s=60), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    book.clock.now_us = us(2026, 3, 10, 15, 59, 59, 999_999)
    refused(book, lambda: pay(book, "d", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    book.clock.now_us = us(2026, 3, 10, 16, 0, 0)  # 00:00:00 on 11 March in Beijing: a new day
    book.ledger.post_one(pay(book, "d", w, book.merchant, 5_000))
    book.ledger.post_one(pay(book, "e", w, book.merchant, 3_000))
    refused(book, lambda: pay(book, "f", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    assert balance(book, w) == 30_000 - 16_000


def test_undone_outflows_give_the_day_back(book: Book) -> None:
    w = tiered(book, "D2", funds=10_000)
    ledger = book.ledger
    ledger.post_one(pay(book, "spend", w, book.merchant, 4_000))
    # A hold counts toward the day; voiding it gives the allowance back.
    hold = ledger.post_one(pay(book, "hold", w, book.merchant, 4_000, pending=True, timeout_s=600))
    refused(book, lambda: pay(book, "more", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    ledger.post_one(VoidPending("void", hold.id))
    # So does a hold that expires the same day.
    hold_2 = ledger.post_one(pay(book, "hold-2", w, book.merchant, 4_000, pending=True, timeout_s=60))
    refused(book, lambda: pay(book, "more", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    book.clock.now_us += 60_000_000
    assert [r.transfer.pending_id for r in ledger.expire_due()] == [hold_2.id]
    # And a reversal the same day.
    last = ledger.post_one(pay(book, "last", w, book.merchant, 4_000))
    refused(book, lambda: pay(book, "more", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    ledger.post_one(Reverse("undo-last", last.id))
    ledger.post_one(pay(book, "more", w, book.merchant, 4_000))
    refused(book, lambda: pay(book, "more-2", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_day")
    assert balance(book, w) == 10_000 - 8_000


def test_refusal_for_funds_leaves_the_day_untouched(book: Book) -> None:
    w = tiered(book, "D3", funds=3_000)
    refused(book, lambda: pay(book, "poor", w, book.merchant, 4_000), RejectCode.EXCEEDS_CREDITS, "debit_account")
    book.ledger.post_one(pay(book, "top-up", book.bank, w, 20_000, kind=DEPOSIT))
    # Had the refused 4,000 been counted, 5,000 more would pass the 8,000 of the day.
    book.ledger.post_one(pay(book, "a", w, book.merchant, 5_000))
    book.ledger.post_one(pay(book, "b", w, book.merchant, 3_000))


def test_per_month_limit_resets_with_the_local_month(book: Book) -> None:
    w = tiered(book, "M1", Tier("monthly", per_month_max=20_000), funds=0)
    book.ledger.post_one(pay(book, "top-up", book.bank, w, 60_000, kind=DEPOSIT))
    book.clock.now_us = us(2026, 3, 1, 0)  # 08:00 on 1 March in Beijing
    book.ledger.post_one(pay(book, "a", w, book.merchant, 12_000))
    book.clock.now_us = us(2026, 3, 20, 0)
    book.ledger.post_one(pay(book, "b", w, book.merchant, 8_000))
    book.clock.now_us = us(2026, 3, 31, 15, 59, 59, 999_999)  # the last instant of March in Beijing
    refused(book, lambda: pay(book, "c", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_month")
    book.clock.now_us = us(2026, 3, 31, 16)  # 1 April in Beijing, still 31 March in UTC
    book.ledger.post_one(pay(book, "c", w, book.merchant, 20_000))
    refused(book, lambda: pay(book, "d", w, book.merchant, 1), RejectCode.LIMIT_EXCEEDED, "limit.per_month")


def test_maximum_balance_counts_incoming_holds(book: Book) -> None:
    w = tiered(book, "X1", funds=25_000)
    refused(book, lambda: pay(book, "over", book.bank, w, 5_001, kind=DEPOSIT), RejectCode.LIMIT_EXCEEDED, "limit.balance")
    book.ledger.post_one(pay(book, "hold-in", book.bank, w, 4_000, kind=DEPOSIT, pending=True, timeout_s=60))
    refused(book, lambda: pay(book, "over", book.bank, w, 1_001, kind=DEPOSIT), RejectCode.LIMIT_EXCEEDED, "limit.balance")
    # The limit is checked before the funds of the payer.
    refused(book, lambda: pay(book, "over", book.other, w, 1_001), RejectCode.LIMIT_EXCEEDED, "limit.balance")
    book.ledger.post_one(pay(book, "exactly", book.bank, w, 1_000, kind=DEPOSIT))
    assert book.ledger.account(w).credits_posted + book.ledger.account(w).credits_pending == 30_000


def test_bad_tiers_are_refused(book: Book) -> None:
    ledger = book.ledger
    for bad, field in [
        (Tier("t", per_txn_max=0), "limit.per_txn_max"),
        (Tier("t", per_day_max=-1), "limit.per_day_max"),
        (Tier("t", per_month_max=True), "limit.per_month_max"),
        (Tier("t", balance_max=1.5), "limit.balance_max"),
        (Tier(""), "tier"),
        (Tier("t" * 33), "tier"),
    ]:
        with pytest.raises(RequestError) as info:
            ledger.set_tier(bad)
        assert (info.value.reject_code, info.value.field) == (RejectCode.FIELD_INVALID, field), bad
    assert {t.name for t in ledger.tiers()} == {"basic", "verified", "premium"}


# --- Request fields -------------------------------------------------------------------

BAD_KEYS = ["", "k" * (IDEMPOTENCY_KEY_LEN_MAX + 1), "a#b", "#", "line\nbreak", "tab\t", "\x00", 7, None]


def test_bad_idempotency_keys_are_refused(book: Book) -> None:
    hold = book.ledger.post_one(pay(book, "hold", book.wallet, book.other, 100, pending=True, timeout_s=60))
    paid = book.ledger.post_one(pay(book, "paid", book.wallet, book.other, 100))
    makers: list[Callable[[Any], Request]] = [
        lambda k: pay(book, k, book.wallet, book.other, 100),
        lambda k: PostPending(k, hold.id),
        lambda k: VoidPending(k, hold.id),
        lambda k: Reverse(k, paid.id),
    ]
    for make in makers:
        for key in BAD_KEYS:
            refused(book, lambda m=make, k=key: m(k), RejectCode.FIELD_INVALID, "idempotency_key")
    # The longest key is fine.
    book.ledger.post_one(pay(book, "k" * IDEMPOTENCY_KEY_LEN_MAX, book.wallet, book.other, 100))


def test_bad_pending_timeouts_are_refused(book: Book) -> None:
    for pending, timeout in [(True, 0), (True, -1), (True, PENDING_TIMEOUT_S_MAX + 1), (True, True), (True, 1.5),
                             (True, "60"), (True, None), (False, 5), (False, -5)]:
        refused(book, lambda p=pending, t=timeout: pay(book, "hold", book.wallet, book.other, 100, pending=p, timeout_s=t),
                RejectCode.FIELD_INVALID, "timeout_s")
    hold = book.ledger.post_one(pay(book, "hold", book.wallet, book.other, 100, pending=True, timeout_s=PENDING_TIMEOUT_S_MAX))
    assert hold.expires_us == T0_US + PENDING_TIMEOUT_S_MAX * 1_000_000


def test_memo_too_long_is_refused(book: Book) -> None:
    paid = book.ledger.post_one(pay(book, "paid", book.wallet, book.other, 100, memo="m" * MEMO_LEN_MAX))
    assert paid.memo == "m" * MEMO_LEN_MAX
    refused(book, lambda: pay(book, "long", book.wallet, book.other, 100, memo="m" * (MEMO_LEN_MAX + 1)), RejectCode.FIELD_INVALID, "memo")
    refused(book, lambda: Reverse("undo", paid.id, memo="账" * (MEMO_LEN_MAX + 1)), RejectCode.FIELD_INVALID, "memo")
    refused(book, lambda: pay(book, "none", book.wallet, book.other, 100, memo=None), RejectCode.FIELD_INVALID, "memo")


def test_bad_kinds_and_channels_are_refused(book: Book) -> None:
    for kind in ("bogus", TransferKind.REVERSAL, TransferKind.PROMOTION_BONUS, None):
        refused(book, lambda k=kind: Transfer("k", book.wallet, book.other, 100, k), RejectCode.FIELD_INVALID, "kind")
    hold = book.ledger.post_one(pay(book, "hold", book.wallet, book.other, 100, pending=True, timeout_s=60))
    for make in (lambda c: pay(book, "k", book.wallet, book.other, 100, channel=c), lambda c: PostPending("k", hold.id, c),
                 lambda c: VoidPending("k", hold.id, c), lambda c: Reverse("k", 1, c)):
        refused(book, lambda m=make: m("carrier-pigeon"), RejectCode.FIELD_INVALID, "channel")


def test_bad_transfer_references_are_refused(book: Book) -> None:
    for bad in (0, -1, True, "1", None, 2**63):
        refused(book, lambda b=bad: PostPending("k", b), RejectCode.FIELD_INVALID, "pending_id")
        refused(book, lambda b=bad: VoidPending("k", b), RejectCode.FIELD_INVALID, "pending_id")
        refused(book, lambda b=bad: Reverse("k", b), RejectCode.FIELD_INVALID, "transfer_id")
    refused(book, lambda: PostPending("k", 2**63 - 1), RejectCode.TRANSFER_NOT_FOUND, "pending_id")
    refused(book, lambda: VoidPending("k", 999_999), RejectCode.TRANSFER_NOT_FOUND, "pending_id")
    refused(book, lambda: Reverse("k", 999_999), RejectCode.TRANSFER_NOT_FOUND, "transfer_id")


def test_bad_batches_and_chains_are_refused(book: Book) -> None:
    good = pay(book, "good", book.wallet, book.other, 100)
    refused(book, lambda: [Linked(())], RejectCode.FIELD_INVALID, "linked")
    chain = tuple(pay(book, f"c{i}", book.wallet, book.other, 1) for i in range(LINKED_CHAIN_LEN_MAX + 1))
    refused(book, lambda: [Linked(chain)], RejectCode.FIELD_INVALID, "linked")
    twice = pay(book, "good", book.wallet, book.other, 200)
    refused(book, lambda: [Linked((good, twice))], RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key")
    many = [pay(book, f"m{i}", book.wallet, book.other, 1) for i in range(BATCH_LEN_MAX + 1)]
    refused(book, lambda: many, RejectCode.FIELD_INVALID, "batch")
    assert book.ledger.post_batch([]) == []
    # The longest chain is fine.
    results = book.ledger.post_batch([Linked(chain[:LINKED_CHAIN_LEN_MAX])])
    assert all(r.ok for r in results) and balance(book, book.other) == LINKED_CHAIN_LEN_MAX


def test_a_refused_request_does_not_stop_the_rest_of_its_batch(book: Book) -> None:
    results = book.ledger.post_batch([
        pay(book, "a", book.wallet, book.other, 100),
        pay(book, "b", book.wallet, book.other, 1_000_000),
        pay(book, "c", book.wallet, book.other, 100, currency="USD"),
        pay(book, "d", book.wallet, 999_999, 100),
        pay(book, "e", book.wallet, book.other, 100),
    ])
    assert [(r.error.reject_code, r.error.field) if r.error else None for r in results] == [
        None, (RejectCode.EXCEEDS_CREDITS, "debit_account"), (RejectCode.CURRENCY_MISMATCH, "currency"),
        (RejectCode.ACCOUNT_NOT_FOUND, "credit_account"), None,
    ]
    assert balance(book, book.other) == 200
    assert verify_ledger(book.engine).ok


# --- money: the amount codec ------------------------------------------------------------

AMOUNT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]{2}")


def test_format_then_parse_is_the_identity_over_a_whole_range() -> None:
    for fen in range(100_000):
        text = format_amount(fen)
        assert AMOUNT_TEXT.fullmatch(text), text
        assert parse_amount(text, allow_zero=True) == fen
        assert format_amount(parse_amount(text, allow_zero=True)) == text


@given(st.integers(1, AMOUNT_FEN_MAX))
@example(1)
@example(99)
@example(100)
@example(AMOUNT_FEN_MAX)
def test_format_then_parse_is_the_identity(fen: int) -> None:
    text = format_amount(fen)
    assert AMOUNT_TEXT.fullmatch(text)
    assert parse_amount(text) == fen
    assert format_amount(parse_amount(text)) == text
    assert parse_amount(text) == money.check_amount(fen)


@given(st.integers(0, AMOUNT_FEN_MAX), st.integers(0, 6), st.sampled_from(["", "+", " ", "\t"]))
def test_equivalent_texts_parse_alike(fen: int, zeros: int, prefix: str) -> None:
    whole, frac = divmod(fen, 100)
    expected = fen
    texts = [f"{prefix}{whole}.{frac:02d}{'0' * zeros}", f"{'0' * zeros}{whole}.{frac:02d}"]
    if frac % 10 == 0:
        texts.append(f"{whole}.{frac // 10}")
    if frac == 0:
        texts.append(f"{whole}")
    for text in texts:
        if len(text.strip()) <= AMOUNT_TEXT_LEN_MAX:
            assert parse_amount(text, allow_zero=True) == expected, text


@given(st.integers(-AMOUNT_FEN_MAX, -1))
def test_negative_amounts_do_not_parse(fen: int) -> None:
    with pytest.raises(RequestError) as info:
        parse_amount(format_amount(fen), allow_zero=True)
    assert (info.value.reject_code, info.value.field) == (RejectCode.AMOUNT_MUST_BE_POSITIVE, "amount")


@given(st.integers(AMOUNT_FEN_MAX + 1, 10**28))
def test_amounts_above_the_maximum_do_not_parse(fen: int) -> None:
    with pytest.raises(RequestError) as info:
        parse_amount(format_amount(fen), field="top_up")
    assert (info.value.reject_code, info.value.field) == (RejectCode.AMOUNT_TOO_LARGE, "top_up")


@pytest.mark.parametrize(("text", "code"), [
    ("1.234", RejectCode.AMOUNT_NOT_WHOLE_FEN),
    ("0.001", RejectCode.AMOUNT_NOT_WHOLE_FEN),
    ("1.2300001", RejectCode.AMOUNT_NOT_WHOLE_FEN),
    ("0", RejectCode.AMOUNT_MUST_BE_POSITIVE),
    ("0.00", RejectCode.AMOUNT_MUST_BE_POSITIVE),
    ("-0.01", RejectCode.AMOUNT_MUST_BE_POSITIVE),
    ("", RejectCode.AMOUNT_MALFORMED),
    (".5", RejectCode.AMOUNT_MALFORMED),
    ("5.", RejectCode.AMOUNT_MALFORMED),
    ("1,000.00", RejectCode.AMOUNT_MALFORMED),
    ("1_000", RejectCode.AMOUNT_MALFORMED),
    ("1e3", RejectCode.AMOUNT_MALFORMED),
    ("--1", RejectCode.AMOUNT_MALFORMED),
    ("١٢٣", RejectCode.AMOUNT_MALFORMED),  # Arabic-Indic digits: int() would take them, the parser must not
    ("１２", RejectCode.AMOUNT_MALFORMED),  # full-width digits
    ("12\n34", RejectCode.AMOUNT_MALFORMED),
    ("¥12", RejectCode.AMOUNT_MALFORMED),
    ("nan", RejectCode.AMOUNT_MALFORMED),
    ("1" * (AMOUNT_TEXT_LEN_MAX + 1), RejectCode.AMOUNT_TOO_LARGE),
    ("100000000000.01", RejectCode.AMOUNT_TOO_LARGE),
])
def test_bad_amount_texts_name_the_field(text: str, code: RejectCode) -> None:
    with pytest.raises(RequestError) as info:
        parse_amount(text, field="amount")
    assert (info.value.reject_code, info.value.field) == (code, "amount")


JUNKISH = st.text(alphabet=st.sampled_from("0123456789.+- \t\n,_eE٣１x"), max_size=AMOUNT_TEXT_LEN_MAX + 4)


@given(st.one_of(st.text(max_size=AMOUNT_TEXT_LEN_MAX + 8), JUNKISH), st.booleans())
@example("1.234", False)
@example("\n12.34\n", False)
@example("0.00", True)
@example("9" * 40, False)
def test_parse_of_junk_only_ever_raises_request_error(text: str, allow_zero: bool) -> None:
    try:
        value = parse_amount(text, field="memo_amount", allow_zero=allow_zero)
    except RequestError as exc:
        assert exc.field == "memo_amount"
        assert exc.reject_code in {RejectCode.AMOUNT_MALFORMED, RejectCode.AMOUNT_NOT_WHOLE_FEN,
                                   RejectCode.AMOUNT_MUST_BE_POSITIVE, RejectCode.AMOUNT_TOO_LARGE}
    else:
        assert type(value) is int
        assert (0 if allow_zero else 1) <= value <= AMOUNT_FEN_MAX
        # Whatever parses means what it says: compare with exact decimal arithmetic.
        assert Decimal(text.strip()) * 100 == value
