"""Behaviour of the double-entry ledger on SQLite and PostgreSQL, and unit tests of its limits.

Every test taking ``book`` runs once per database (``db_url``). Expected
balances come from a replay written here, from the returned transfer rows
alone: a single or post row moves posted money, a pending row adds to the
pending sums and its post, void or expiry takes it off again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import assume, example, given
from hypothesis import strategies as st
from ledger_book import SECOND_US, T0_US, Book, us
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger import limits
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.limits import Spent, Tier, check_inflow, check_outflow, day_key, month_key
from simwallet.gateway.ledger.model import (
    AccountFlags,
    AccountKind,
    AccountStatus,
    Channel,
    Linked,
    Phase,
    PostedTransfer,
    PostPending,
    Request,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
)
from simwallet.gateway.ledger.rows import Sums, row_to_transfer
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.store.schema import accounts, holds, transfers

P2P = TransferKind.P2P
DEPOSIT = TransferKind.DEPOSIT
PAYMENT = TransferKind.MERCHANT_PAYMENT


def refusal(results: list[Any]) -> list[tuple[RejectCode, str | None] | None]:
    return [(r.error.reject_code, r.error.field) if r.error is not None else None for r in results]


def refuses(ledger: Ledger, request: Request, code: RejectCode, field: str) -> None:
    with pytest.raises(RequestError) as info:
        ledger.post_one(request)
    assert (info.value.reject_code, info.value.field) == (code, field), str(info.value)


def replay(rows: Iterable[PostedTransfer], account: int) -> Sums:
    """An account's sums from transfer rows, by the rules of the two-phase life cycle."""
    dp = dpo = cp = cpo = 0
    for t in rows:
        pending = t.amount if t.phase == Phase.PENDING else -t.amount if t.phase in (Phase.POST, Phase.VOID, Phase.EXPIRE) else 0
        posted = t.amount if t.phase in (Phase.SINGLE, Phase.POST) else 0
        if t.debit_account_id == account:
            dp, dpo = dp + pending, dpo + posted
        if t.credit_account_id == account:
            cp, cpo = cp + pending, cpo + posted
    return Sums(dp, dpo, cp, cpo)


def all_rows(engine: Engine) -> list[PostedTransfer]:
    with engine.connect() as conn:
        return [row_to_transfer(r) for r in conn.execute(sa.select(transfers).order_by(transfers.c.id))]


def sums_of(ledger: Ledger, account: int) -> Sums:
    a = ledger.account(account)
    return Sums(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def busy_day(book: Book) -> list[PostedTransfer]:
    """A day of every kind of posting, one second apart; returns every row written."""
    ledger, clock, w, o, m, bank = book.ledger, book.clock, book.wallet, book.other, book.merchant, book.bank
    steps: list[Callable[[], Any]] = [
        lambda: book.pay("p2p-1", w, o, 1_500),
        lambda: book.hold("hold-1", w, m, 2_000),
        lambda: book.pay("dep-1", bank, o, 700, kind=DEPOSIT),
        lambda: ledger.post_one(PostPending("post-1", ledger.transfer_by_key("hold-1").id)),
        lambda: book.hold("hold-2", o, m, 900),
        lambda: ledger.post_one(VoidPending("void-2", ledger.transfer_by_key("hold-2").id)),
        lambda: ledger.post_one(Reverse("rev-1", ledger.transfer_by_key("p2p-1").id)),
        lambda: book.hold("hold-3", w, o, 300, timeout_s=1),
        lambda: book.pay("p2p-2", o, w, 200),
        ledger.expire_due,
        lambda: book.pay("pay-1", w, m, 1_000, kind=PAYMENT),
        lambda: book.hold("hold-4", o, w, 100, timeout_s=3_600),
    ]
    for step in steps:
        clock.advance(1)
        step()
    return all_rows(book.engine)


# --- As-of balances and history ---------------------------------------------------------


def test_sums_as_of_a_transfer_or_a_time_match_a_replay(book: Book) -> None:
    rows = busy_day(book)
    assert [r.phase for r in rows].count(Phase.EXPIRE) == 1
    ids = [r.id for r in rows]
    assert ids == sorted(ids)
    everyone = (book.bank, book.wallet, book.other, book.merchant)
    for row in rows:
        upto = [r for r in rows if r.id <= row.id]
        for account in everyone:
            assert book.ledger.sums_as_of(account, transfer_id=row.id) == replay(upto, account), (row, account)
    for ts in sorted({r.ts_us for r in rows} | {T0_US - 1}):
        for moment in (ts - 1, ts):
            upto = [r for r in rows if r.ts_us <= moment]
            for account in everyone:
                assert book.ledger.sums_as_of(account, ts_us=moment) == replay(upto, account), (moment, account)
    # Both bounds at once, by reference, and the present equals the cached sums.
    middle = rows[len(rows) // 2]
    assert book.ledger.sums_as_of("customer:C1/customer_wallet", transfer_id=rows[-1].id, ts_us=middle.ts_us) == \
        replay([r for r in rows if r.ts_us <= middle.ts_us], book.wallet)
    for account in everyone:
        assert book.ledger.sums_as_of(account) == sums_of(book.ledger, account) == replay(rows, account)
    # An account without transfers, and one that does not exist.
    idle = book.ledger.open_account(AccountKind.MERCHANT, "merchant:M2").id
    assert book.ledger.sums_as_of(idle) == Sums()
    with pytest.raises(RequestError) as info:
        book.ledger.sums_as_of(999_999)
    assert info.value.reject_code is RejectCode.ACCOUNT_NOT_FOUND


def test_history_lists_the_posted_balance_after_each_transfer(book: Book) -> None:
    # A bank account kept in its natural direction (debits - credits) as well.
    asset = book.ledger.open_account(AccountKind.BANK_SETTLEMENT, "bank:ABC", flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS).id
    book.pay("asset-1", asset, book.other, 3_000, kind=DEPOSIT)
    rows = busy_day(book)
    book.clock.advance(1)
    book.ledger.post_one(Reverse("rev-asset", book.ledger.transfer_by_key("asset-1").id))
    rows = all_rows(book.engine)
    for account in (book.bank, book.wallet, book.other, book.merchant, asset):
        acct = book.ledger.account(account)
        sign = -1 if acct.debit_normal else 1  # a bank's balance is what it owes the operator: debits - credits
        mine = [r for r in rows if account in (r.debit_account_id, r.credit_account_id)]
        lines = book.ledger.history(account, limit=1_000)
        assert [line.transfer.id for line in lines] == [r.id for r in reversed(mine)]
        for line in lines:
            assert line.transfer == next(r for r in mine if r.id == line.transfer.id)
            assert line.direction == ("debit" if line.transfer.debit_account_id == account else "credit")
            sums = replay([r for r in mine if r.id <= line.transfer.id], account)
            assert line.balance_after == sign * (sums.credits_posted - sums.debits_posted), line
        assert lines[0].balance_after == acct.balance
        # Pages of three, newest first, join up to the whole history.
        paged: list[int] = []
        before: int | None = None
        while page := book.ledger.history(account, limit=3, before_id=before):
            assert len(page) <= 3
            paged += [line.transfer.id for line in page]
            before = page[-1].transfer.id
        assert paged == [line.transfer.id for line in lines]
    assert book.ledger.account(asset).balance == 0
    assert book.ledger.history(book.ledger.open_account(AccountKind.MERCHANT, "merchant:M3").id) == []


# --- Two-phase transfers ------------------------------------------------------------------


def test_two_phase_life_cycle(book: Book) -> None:
    ledger, w, m = book.ledger, book.wallet, book.merchant
    hold = book.hold("hold", w, m, 4_000, timeout_s=600)
    assert (hold.phase, hold.expires_us, hold.pending_id) == (Phase.PENDING, T0_US + 600 * SECOND_US, None)
    wallet = ledger.account(w)
    assert (wallet.balance, wallet.available, wallet.debits_pending) == (10_000, 6_000, 4_000)
    assert ledger.account(m).credits_pending == 4_000 and ledger.account(m).balance == 0
    assert book.open_holds() == {hold.id}
    book.clock.advance(10)
    posted = ledger.post_one(PostPending("post", hold.id, Channel.BANK))
    assert (posted.phase, posted.pending_id, posted.amount, posted.debit_account_id, posted.credit_account_id) == \
        (Phase.POST, hold.id, 4_000, w, m)
    assert (posted.kind, posted.channel, posted.ts_us) == (P2P, Channel.BANK, T0_US + 10 * SECOND_US)
    assert posted.id > hold.id
    wallet = ledger.account(w)
    assert (wallet.balance, wallet.available, wallet.debits_pending) == (6_000, 6_000, 0)
    assert ledger.account(m).balance == 4_000
    assert book.open_holds() == set()
    # A posted hold is done with.
    refuses(ledger, PostPending("post-again", hold.id), RejectCode.PENDING_ALREADY_POSTED, "pending_id")
    refuses(ledger, VoidPending("void-late", hold.id), RejectCode.PENDING_ALREADY_POSTED, "pending_id")
    # Voided.
    hold_2 = book.hold("hold-2", w, m, 1_000)
    voided = ledger.post_one(VoidPending("void-2", hold_2.id))
    assert (voided.phase, voided.pending_id, voided.amount) == (Phase.VOID, hold_2.id, 1_000)
    assert (ledger.account(w).available, ledger.account(m).credits_pending) == (6_000, 0)
    refuses(ledger, PostPending("post-2", hold_2.id), RejectCode.PENDING_ALREADY_VOIDED, "pending_id")
    refuses(ledger, VoidPending("void-2-again", hold_2.id), RejectCode.PENDING_ALREADY_VOIDED, "pending_id")
    # Only pending transfers can be posted or voided.
    for not_a_hold in (posted.id, voided.id, ledger.transfer_by_key("fund").id):
        refuses(ledger, PostPending("post-x", not_a_hold), RejectCode.NOT_PENDING, "pending_id")
        refuses(ledger, VoidPending("void-x", not_a_hold), RejectCode.NOT_PENDING, "pending_id")
    refuses(ledger, PostPending("post-y", 999_999), RejectCode.TRANSFER_NOT_FOUND, "pending_id")
    assert verify_ledger(book.engine).ok


def test_a_hold_can_be_posted_until_the_microsecond_it_expires(book: Book) -> None:
    ledger = book.ledger
    early = book.hold("early", book.wallet, book.merchant, 100, timeout_s=60)
    late = book.hold("late", book.wallet, book.merchant, 100, timeout_s=60)
    book.clock.now_us = early.expires_us - 1
    ledger.post_one(PostPending("post-early", early.id))
    book.clock.now_us = late.expires_us
    refuses(ledger, PostPending("post-late", late.id), RejectCode.PENDING_EXPIRED, "pending_id")
    assert [r.transfer.pending_id for r in ledger.expire_due()] == [late.id]
    refuses(ledger, PostPending("post-late", late.id), RejectCode.PENDING_EXPIRED, "pending_id")
    refuses(ledger, VoidPending("void-late", late.id), RejectCode.PENDING_EXPIRED, "pending_id")
    assert book.balances(book.wallet, book.merchant) == (9_900, 100)


def test_frozen_accounts_cannot_post_holds_but_can_void_them(book: Book) -> None:
    ledger = book.ledger
    a = book.hold("a", book.wallet, book.merchant, 100)
    b = book.hold("b", book.wallet, book.merchant, 100)
    ledger.set_status(book.merchant, AccountStatus.FROZEN)
    refuses(ledger, PostPending("post-a", a.id), RejectCode.ACCOUNT_FROZEN, "credit_account")
    ledger.post_one(VoidPending("void-b", b.id))
    ledger.set_status(book.merchant, AccountStatus.OPEN)
    ledger.set_status(book.wallet, AccountStatus.FROZEN)
    refuses(ledger, PostPending("post-a", a.id), RejectCode.ACCOUNT_FROZEN, "debit_account")
    ledger.set_status(book.wallet, AccountStatus.OPEN)
    ledger.post_one(PostPending("post-a", a.id))
    assert book.balances(book.wallet, book.merchant) == (9_900, 100)


def test_expire_due_releases_only_the_holds_whose_time_has_come(book: Book) -> None:
    ledger, w, m, o = book.ledger, book.wallet, book.merchant, book.other
    h30 = book.hold("h30", w, m, 100, timeout_s=30)
    h10 = book.hold("h10", w, m, 200, timeout_s=10)
    h60 = book.hold("h60", w, o, 400, timeout_s=60)
    h20 = book.hold("h20", w, o, 800, timeout_s=20)
    assert ledger.expire_due() == []
    book.clock.now_us = T0_US + 10 * SECOND_US - 1
    assert ledger.expire_due() == []
    book.clock.now_us = T0_US + 30 * SECOND_US  # exactly when h30 lapses
    ledger.set_status(o, AccountStatus.FROZEN)  # expiry is a correction: it goes through
    n_before = book.n_transfers()
    results = ledger.expire_due(limit=2)
    assert [r.transfer.pending_id for r in results] == [h10.id, h20.id]  # the earliest first, at most `limit`
    results += ledger.expire_due()
    assert [r.transfer.pending_id for r in results] == [h10.id, h20.id, h30.id]
    for result, hold in zip(results, (h10, h20, h30), strict=True):
        row = result.transfer
        assert (result.idempotency_key, row.idempotency_key) == (f"{hold.idempotency_key}#expire",) * 2
        assert (row.phase, row.amount, row.debit_account_id, row.credit_account_id) == \
            (Phase.EXPIRE, hold.amount, hold.debit_account_id, hold.credit_account_id)
        assert (row.channel, row.ts_us) == (Channel.SYSTEM, book.clock.now_us)
    assert book.n_transfers() == n_before + 3
    assert ledger.expire_due() == []
    assert book.open_holds() == {h60.id}
    assert ledger.account(w).available == 10_000 - 400
    refuses(ledger, PostPending("post-h30", h30.id), RejectCode.PENDING_EXPIRED, "pending_id")
    refuses(ledger, VoidPending("void-h30", h30.id), RejectCode.PENDING_EXPIRED, "pending_id")
    ledger.set_status(o, AccountStatus.OPEN)
    ledger.post_one(PostPending("post-h60", h60.id))
    assert book.balances(w, m, o) == (9_600, 0, 400)
    assert verify_ledger(book.engine).ok


# --- Linked chains ----------------------------------------------------------------------


def test_a_linked_chain_posts_all_or_nothing(book: Book) -> None:
    ledger, w, o, m, bank = book.ledger, book.wallet, book.other, book.merchant, book.bank
    n_before = book.n_transfers()
    # A top-up, then spending that needs it, then a member that fails.
    chain = Linked((
        Transfer("top-up", bank, o, 5_000, DEPOSIT),
        Transfer("spend", o, m, 5_000, PAYMENT),
        Transfer("too-much", w, m, 10_001, PAYMENT),
    ))
    results = ledger.post_batch([Transfer("alone", w, o, 1, P2P), chain, Transfer("after", w, o, 2, P2P)])
    assert [r.idempotency_key for r in results] == ["alone", "top-up", "spend", "too-much", "after"]
    assert refusal(results) == [None, (RejectCode.LINKED_EVENT_FAILED, "linked"), (RejectCode.LINKED_EVENT_FAILED, "linked"),
                                (RejectCode.EXCEEDS_CREDITS, "debit_account"), None]
    assert "exceeds_credits" in str(results[1].error)
    assert book.n_transfers() == n_before + 2
    assert book.balances(bank, w, o, m) == (10_000, 9_997, 3, 0)
    # A failure in the middle fails the members after it too.
    chain = Linked((Transfer("m1", bank, o, 1, DEPOSIT), Transfer("m2", o, m, 99, PAYMENT), Transfer("m3", bank, o, 1, DEPOSIT)))
    linked_failed = (RejectCode.LINKED_EVENT_FAILED, "linked")
    assert refusal(ledger.post_batch([chain])) == [linked_failed, (RejectCode.EXCEEDS_CREDITS, "debit_account"), linked_failed]
    # Nothing of a failed chain holds its keys: the same keys go through when the chain is sound.
    chain = Linked((Transfer("top-up", bank, o, 5_000, DEPOSIT), Transfer("spend", o, m, 5_000, PAYMENT),
                    Transfer("too-much", w, m, 10, PAYMENT)))
    results = ledger.post_batch([chain])
    assert all(r.ok and not r.duplicate for r in results)
    ids = [r.transfer.id for r in results]
    assert ids == sorted(ids)
    assert book.balances(bank, w, o, m) == (15_000, 9_987, 3, 5_010)
    # Chains may resolve holds; a failure undoes the resolution as well.
    hold = book.hold("hold", w, m, 50)
    results = ledger.post_batch([Linked((PostPending("post", hold.id), Transfer("too-big", w, o, 99_999, P2P)))])
    assert refusal(results) == [(RejectCode.LINKED_EVENT_FAILED, "linked"), (RejectCode.EXCEEDS_CREDITS, "debit_account")]
    assert book.open_holds() == {hold.id}
    assert verify_ledger(book.engine).ok


# --- Reversals -----------------------------------------------------------------------


def test_reversal_is_a_new_mirrored_transfer(book: Book) -> None:
    ledger, w, o = book.ledger, book.wallet, book.other
    original = book.pay("p2p", w, o, 2_500, channel=Channel.USSD, memo="lunch")
    book.clock.advance(5)
    reversal = ledger.post_one(Reverse("undo", original.id, Channel.COUNTER, memo="wrong number"))
    assert ledger.transfer(original.id) == original  # untouched
    assert (reversal.debit_account_id, reversal.credit_account_id, reversal.amount) == (o, w, 2_500)
    assert (reversal.kind, reversal.phase, reversal.reverses_id) == (TransferKind.REVERSAL, Phase.SINGLE, original.id)
    assert (reversal.channel, reversal.memo, reversal.ts_us) == (Channel.COUNTER, "wrong number", T0_US + 5 * SECOND_US)
    assert reversal.id > original.id
    assert book.balances(w, o) == (10_000, 0)
    refuses(ledger, Reverse("undo-2", original.id), RejectCode.ALREADY_REVERSED, "transfer_id")
    refuses(ledger, Reverse("undo-undo", reversal.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    refuses(ledger, Reverse("undo-x", 999_999), RejectCode.TRANSFER_NOT_FOUND, "transfer_id")
    assert ledger.post_batch([Reverse("undo", original.id, Channel.COUNTER, memo="wrong number")])[0].duplicate


def test_only_posted_money_can_be_reversed(book: Book) -> None:
    ledger, w, m = book.ledger, book.wallet, book.merchant
    hold = book.hold("hold", w, m, 300)
    refuses(ledger, Reverse("r-pending", hold.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    voided = ledger.post_one(VoidPending("void", hold.id))
    refuses(ledger, Reverse("r-void", voided.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    hold_2 = book.hold("hold-2", w, m, 400)
    posted = ledger.post_one(PostPending("post-2", hold_2.id))
    refuses(ledger, Reverse("r-pending-2", hold_2.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    ledger.post_one(Reverse("r-post", posted.id))
    hold_3 = book.hold("hold-3", w, m, 500, timeout_s=1)
    book.clock.advance(1)
    expired = ledger.expire_due()[0].transfer
    refuses(ledger, Reverse("r-expire", expired.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    refuses(ledger, Reverse("r-pending-3", hold_3.id), RejectCode.NOT_REVERSIBLE, "transfer_id")
    assert book.balances(w, m) == (10_000, 0)


def test_reversal_needs_the_money_back_but_not_an_open_account(book: Book) -> None:
    ledger, w, o, m = book.ledger, book.wallet, book.other, book.merchant
    paid = book.pay("paid", w, o, 3_000)
    book.pay("spent", o, m, 2_000, kind=PAYMENT)
    refuses(ledger, Reverse("undo", paid.id), RejectCode.EXCEEDS_CREDITS, "debit_account")
    book.pay("refund", m, o, 2_000)
    # Frozen accounts take corrections.
    ledger.set_status(o, AccountStatus.FROZEN)
    ledger.set_status(w, AccountStatus.FROZEN)
    ledger.post_one(Reverse("undo", paid.id))
    assert book.balances(w, o) == (10_000, 0)
    # A closed account takes nothing.
    ledger.set_status(o, AccountStatus.OPEN)
    ledger.set_status(w, AccountStatus.OPEN)
    gift = book.pay("gift", w, o, 100)
    book.pay("gift-spent", o, m, 100, kind=PAYMENT)
    ledger.set_status(o, AccountStatus.CLOSED)
    refuses(ledger, Reverse("undo-gift", gift.id), RejectCode.ACCOUNT_CLOSED, "debit_account")


def test_a_reversal_gives_back_to_the_day_the_money_was_counted(book: Book) -> None:
    """A hold counts toward the day it is placed; reversing its posting another day gives nothing back to that day.

    The limits module promises that corrections give back "to the period's sum
    when they happen in the same period": the period of the outflow they undo.
    """
    ledger = book.ledger
    ledger.set_tier(Tier("daily", per_day_max=5_000))
    w = ledger.open_account(AccountKind.CUSTOMER_WALLET, "customer:D1", tier="daily").id
    book.pay("top-up", book.bank, w, 20_000, kind=DEPOSIT)
    book.clock.now_us = us(2026, 3, 10, 15)  # 23:00 in Beijing
    hold = book.hold("hold", w, book.merchant, 3_000, timeout_s=7_200)
    book.clock.now_us = us(2026, 3, 10, 16, 30)  # 00:30 the next day
    posted = ledger.post_one(PostPending("post", hold.id))
    book.pay("spend", w, book.merchant, 5_000, kind=PAYMENT)  # the whole of the new day
    ledger.post_one(Reverse("undo-post", posted.id))
    # The 3,000 came out of yesterday's allowance: today's is still used up.
    refuses(ledger, Transfer("more", w, book.merchant, 1, PAYMENT), RejectCode.LIMIT_EXCEEDED, "limit.per_day")


# --- Idempotency ---------------------------------------------------------------------


def test_repeated_requests_across_batches(book: Book) -> None:
    ledger, w, o, m = book.ledger, book.wallet, book.other, book.merchant
    pay = Transfer("sms-0001", w, o, 700, P2P, Channel.SMS, memo="rent")
    first = ledger.post_batch([pay])[0]
    n = book.n_transfers()
    again = ledger.post_batch([pay])[0]
    assert (again.duplicate, again.transfers, first.duplicate) == (True, first.transfers, False)
    assert book.n_transfers() == n and book.balances(w, o) == (9_300, 700)
    # A duplicate answers with the original result, whatever happened since.
    ledger.set_status(w, AccountStatus.FROZEN)
    assert ledger.post_batch([pay])[0].transfers == first.transfers
    ledger.set_status(w, AccountStatus.OPEN)
    # Naming an account by reference instead of id is the same request.
    by_ref = replace(pay, debit_account=ledger.account(w).ref, credit_account=ledger.account(o).ref)
    assert ledger.post_batch([by_ref])[0].transfers == first.transfers
    # The same key for anything else is a conflict, however small the difference.
    for different in (replace(pay, amount=701), replace(pay, memo="Rent"), replace(pay, channel=Channel.USSD),
                      replace(pay, credit_account=m), replace(pay, credit_account="merchant:M1/merchant"), replace(pay, kind=PAYMENT),
                      replace(pay, pending=True, timeout_s=60), PostPending("sms-0001", first.transfer.id),
                      Reverse("sms-0001", first.transfer.id)):
        result = ledger.post_batch([different])[0]
        assert refusal([result]) == [(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key")], different
    # Holds, their resolutions and reversals are idempotent too.
    hold = Transfer("hold", w, m, 100, P2P, pending=True, timeout_s=60)
    hold_id = ledger.post_one(hold).id
    assert ledger.post_batch([hold])[0].transfer.id == hold_id
    for request in (PostPending("post", hold_id), Reverse("undo", first.transfer.id)):
        row = ledger.post_one(request)
        again = ledger.post_batch([request])[0]
        assert again.duplicate and again.transfers == (row,)
        assert refusal(ledger.post_batch([replace(request, channel=Channel.WEB)])) == \
            [(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key")]
    assert book.balances(w, o, m) == (9_900, 0, 100)
    assert verify_ledger(book.engine).ok


def test_repeated_requests_within_one_batch(book: Book) -> None:
    ledger, w, o = book.ledger, book.wallet, book.other
    pay = Transfer("k1", w, o, 100, P2P)
    results = ledger.post_batch([pay, Transfer("k2", w, o, 200, P2P), pay, replace(pay, amount=101), pay])
    assert [r.duplicate for r in results] == [False, False, True, False, True]
    assert refusal(results)[3] == (RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key")
    # The duplicates carry the real id of the row written by the first.
    assert results[2].transfers == results[4].transfers == results[0].transfers
    assert ledger.transfer(results[0].transfer.id).idempotency_key == "k1"
    assert book.balances(w, o) == (9_700, 300)
    # A refused request leaves its key free; a later request in the batch may use it.
    results = ledger.post_batch([Transfer("k3", w, o, 99_999, P2P), Transfer("k3", w, o, 5, P2P), Transfer("k3", w, o, 5, P2P)])
    assert refusal(results) == [(RejectCode.EXCEEDS_CREDITS, "debit_account"), None, None]
    assert [r.duplicate for r in results] == [False, False, True]
    assert book.balances(w, o) == (9_695, 305)


# --- Account status --------------------------------------------------------------------


def test_set_status(book: Book) -> None:
    ledger, w, o, m = book.ledger, book.wallet, book.other, book.merchant
    assert ledger.set_status(w, AccountStatus.FROZEN).status == AccountStatus.FROZEN
    assert ledger.set_status("customer:C1/customer_wallet", AccountStatus.OPEN).status == AccountStatus.OPEN

    def close_refused(account: int, code: RejectCode = RejectCode.FIELD_INVALID) -> None:
        with pytest.raises(RequestError) as info:
            ledger.set_status(account, AccountStatus.CLOSED)
        assert (info.value.reject_code, info.value.field) == (code, "status")
        if code is RejectCode.FIELD_INVALID:
            assert ledger.account(account).status != AccountStatus.CLOSED

    close_refused(w)  # a balance
    hold = book.hold("hold", w, o, 10_000)
    close_refused(w)  # a hold out, nothing available
    close_refused(o)  # a hold in
    ledger.post_one(PostPending("post", hold.id))
    book.pay("spend", o, m, 10_000, kind=PAYMENT)
    closed = ledger.set_status(o, AccountStatus.CLOSED)
    assert (closed.status, closed.balance) == (AccountStatus.CLOSED, 0)
    close_refused(o, RejectCode.ACCOUNT_CLOSED)
    for status in (AccountStatus.OPEN, AccountStatus.FROZEN):
        with pytest.raises(RequestError) as info:
            ledger.set_status(o, status)
        assert info.value.reject_code is RejectCode.ACCOUNT_CLOSED
    with pytest.raises(RequestError) as info:
        ledger.set_status(999_999, AccountStatus.FROZEN)
    assert info.value.reject_code is RejectCode.ACCOUNT_NOT_FOUND
    assert verify_ledger(book.engine).ok


# --- Ids and time along each account ------------------------------------------------------


def test_ids_increase_along_each_account_under_concurrent_batches(book: Book) -> None:
    ledger = book.ledger
    ring = [a.id for a in ledger.open_accounts([AccountSpec(AccountKind.CUSTOMER_WALLET, f"customer:R{i}") for i in range(4)])]
    ledger.post_batch([Transfer(f"seed-{i}", book.bank, a, 500, DEPOSIT) for i, a in enumerate(ring)])
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for step in range(15):
                src, dst = ring[n], ring[(n + 1 + step) % 4]
                if src == dst:
                    dst = ring[(n + 2) % 4]
                # Send it all on: the receiver can only spend it if the ledger saw this first.
                have = ledger.account(src).available
                if have:
                    ledger.post_batch([Transfer(f"w{n}-{step}", src, dst, have, P2P)])
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    rows = all_rows(book.engine)
    for account in ring:
        running = 0
        for row in rows:  # in id order
            if row.credit_account_id == account:
                running += row.amount
            elif row.debit_account_id == account:
                running -= row.amount
                assert running >= 0, f"account {account} spent money before it had it, at transfer {row.id}"
        assert running == ledger.account(account).balance
    assert sum(book.balances(*ring)) == 2_000
    assert verify_ledger(book.engine).ok


def test_time_does_not_run_backwards_along_an_account(book: Book) -> None:
    """A batch that read the clock earlier but committed later must not carry the earlier time.

    Otherwise an as-of-time balance shows a state that never was: here, a
    wallet that may not go below zero at -100. The clock of the first batch
    stalls (a slow NTP read, a GC pause) while a second batch commits.
    """
    ledger, clock = book.ledger, book.clock
    w = ledger.open_account(AccountKind.CUSTOMER_WALLET, "customer:T1").id
    in_clock, second_done = threading.Event(), threading.Event()

    def stalling_clock() -> int:
        if threading.current_thread().name == "slow":
            now = clock.now_us
            in_clock.set()
            # SQLite already holds its writer lock here, so the second batch could only queue behind it.
            second_done.wait(5 if book.engine.dialect.name == "postgresql" else 0)
            return now
        return clock.now_us

    slow_ledger = Ledger(book.engine, clock=stalling_clock)
    errors: list[BaseException] = []

    def spend() -> None:
        try:  # refused for want of funds on SQLite, where it runs first; that is fine
            slow_ledger.post_batch([Transfer("spend", w, book.merchant, 100, PAYMENT)])
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    slow = threading.Thread(name="slow", target=spend)
    slow.start()
    assert in_clock.wait(10)
    clock.advance(1)
    ledger.post_one(Transfer("top-up", book.bank, w, 100, DEPOSIT))
    second_done.set()
    slow.join(30)
    assert not errors, errors
    rows = [r for r in all_rows(book.engine) if w in (r.debit_account_id, r.credit_account_id)]
    assert [r.ts_us for r in rows] == sorted(r.ts_us for r in rows), [(r.id, r.idempotency_key, r.ts_us) for r in rows]
    for row in rows:
        sums = ledger.sums_as_of(w, ts_us=row.ts_us)
        assert sums.credits_posted - sums.debits_posted >= 0, (row, sums)


# --- Opening accounts -------------------------------------------------------------------


def test_open_accounts_in_bulk(book: Book) -> None:
    ledger = book.ledger
    specs = [AccountSpec(AccountKind.CUSTOMER_WALLET, f"customer:B{i:04d}", tier=("basic", "verified", None)[i % 3]) for i in range(300)]
    specs += [AccountSpec(AccountKind.CUSTOMER_AIRTIME, "customer:B0000"), AccountSpec(AccountKind.POINTS, "customer:B0000"),
              AccountSpec(AccountKind.BILLER, "biller:water", ref="biller/water"),
              AccountSpec(AccountKind.PROMOTION_EXPENSE, "operator", ref="promo-expense"),
              AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:BOC", flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)]
    opened = ledger.open_accounts(specs)
    assert [(a.kind, a.owner, a.tier) for a in opened] == [(s.kind, s.owner, s.tier) for s in specs]
    assert [a.ref for a in opened[:2]] == ["customer:B0000/customer_wallet", "customer:B0001/customer_wallet"]
    assert [a.ref for a in opened[-4:-1]] == ["customer:B0000/points", "biller/water", "promo-expense"]
    assert len({a.id for a in opened}) == len(specs)
    assert all(a.status == AccountStatus.OPEN and a.currency == "CNY" and a.balance == 0 for a in opened)
    flags = {a.kind: a.flags for a in opened}
    assert flags[AccountKind.CUSTOMER_WALLET] == flags[AccountKind.POINTS] == flags[AccountKind.BILLER] == \
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert flags[AccountKind.PROMOTION_EXPENSE] == AccountFlags.NONE
    assert opened[-1].flags == AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    assert ledger.account(opened[150].ref) == opened[150] == ledger.account(opened[150].id)
    # Listing by owner and kind, in pages.
    assert [a.kind for a in ledger.accounts(owner="customer:B0000")] == \
        [AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_AIRTIME, AccountKind.POINTS]
    wallets = ledger.accounts(kind=AccountKind.CUSTOMER_WALLET, limit=1_000)
    assert len(wallets) == 300 + 2
    page = ledger.accounts(kind=AccountKind.CUSTOMER_WALLET, limit=100, after_id=wallets[99].id)
    assert page == wallets[100:200]
    # All or nothing: one clash refuses the lot.
    n_accounts = len(ledger.accounts(limit=10_000))
    for clash in ([AccountSpec(AccountKind.MERCHANT, "merchant:new"), AccountSpec(AccountKind.MERCHANT, "merchant:M1")],
                  [AccountSpec(AccountKind.MERCHANT, "merchant:twice"), AccountSpec(AccountKind.MERCHANT, "merchant:twice")]):
        with pytest.raises(RequestError) as info:
            ledger.open_accounts(clash)
        assert (info.value.reject_code, info.value.field) == (RejectCode.ACCOUNT_EXISTS, "ref")
        assert len(ledger.accounts(limit=10_000)) == n_accounts
    assert ledger.open_accounts([]) == []


# --- verify_ledger finds tampering ---------------------------------------------------------


def _tamper_cached_sum(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(accounts.update().where(accounts.c.id == ids["wallet"]).values(credits_posted=accounts.c.credits_posted + 1))


def _tamper_transfer_amount(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(transfers.update().where(transfers.c.id == ids["p2p"]).values(amount=transfers.c.amount + 1))


def _tamper_extra_hold(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(holds.insert().values(transfer_id=ids["p2p"], expires_us=T0_US))


def _tamper_lost_hold(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(holds.delete().where(holds.c.transfer_id == ids["open_hold"]))


def _shift(conn: sa.Connection, transfer_id: int, delta: int) -> None:
    """Change a transfer's amount and the cached sums with it, so that only the deeper checks can tell."""
    row = conn.execute(sa.select(transfers).where(transfers.c.id == transfer_id)).one()
    conn.execute(transfers.update().where(transfers.c.id == transfer_id).values(amount=row.amount + delta))
    c = accounts.c
    debit, credit = accounts.c.id == row.debit_account_id, accounts.c.id == row.credit_account_id
    if row.phase in (Phase.SINGLE.value, Phase.POST.value):
        conn.execute(accounts.update().where(debit).values(debits_posted=c.debits_posted + delta))
        conn.execute(accounts.update().where(credit).values(credits_posted=c.credits_posted + delta))
    if row.phase == Phase.POST.value:  # a post also takes its amount off the pending sums
        conn.execute(accounts.update().where(debit).values(debits_pending=c.debits_pending - delta))
        conn.execute(accounts.update().where(credit).values(credits_pending=c.credits_pending - delta))


def _tamper_reversal_amount(conn: sa.Connection, ids: dict[str, int]) -> None:
    _shift(conn, ids["reversal"], -1)


def _tamper_post_amount(conn: sa.Connection, ids: dict[str, int]) -> None:
    _shift(conn, ids["post"], -1)


def _tamper_currency(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(accounts.update().where(accounts.c.id == ids["merchant"]).values(currency="USD"))


def _tamper_flags(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(accounts.update().where(accounts.c.id == ids["bank"]).values(flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)))


def _tamper_resolution(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(transfers.update().where(transfers.c.id == ids["void"]).values(pending_id=ids["p2p"]))


def _tamper_reversal_target(conn: sa.Connection, ids: dict[str, int]) -> None:
    conn.execute(transfers.update().where(transfers.c.id == ids["reversal"]).values(reverses_id=ids["p2p"]))


TAMPERING = [
    pytest.param(_tamper_cached_sum, {"sums", "double_entry"}, id="cached-sum-edited"),
    pytest.param(_tamper_transfer_amount, {"sums"}, id="transfer-amount-edited"),
    pytest.param(_tamper_extra_hold, {"two_phase"}, id="extra-hold-row"),
    pytest.param(_tamper_lost_hold, {"two_phase"}, id="hold-row-deleted"),
    pytest.param(_tamper_reversal_amount, {"reversals"}, id="reversal-not-a-mirror"),
    pytest.param(_tamper_reversal_target, {"reversals"}, id="reversal-of-the-wrong-transfer"),
    pytest.param(_tamper_post_amount, {"two_phase"}, id="post-differs-from-its-hold"),
    pytest.param(_tamper_resolution, {"two_phase"}, id="void-of-a-non-pending-transfer"),
    pytest.param(_tamper_currency, {"double_entry"}, id="transfer-crosses-currencies"),
    pytest.param(_tamper_flags, {"balances"}, id="balance-below-zero-for-its-flag"),
]


@pytest.mark.parametrize(("tamper", "failing"), TAMPERING)
def test_verify_finds_tampering(book: Book, tamper: Callable[[sa.Connection, dict[str, int]], None], failing: set[str]) -> None:
    ledger, w, o, m = book.ledger, book.wallet, book.other, book.merchant
    p2p = book.pay("p2p", w, o, 1_000)
    hold = book.hold("hold", w, m, 500)
    post = ledger.post_one(PostPending("post", hold.id))
    voided = ledger.post_one(VoidPending("void", book.hold("hold-2", w, m, 200).id))
    pay = book.pay("pay", o, m, 300, kind=PAYMENT)
    reversal = ledger.post_one(Reverse("undo", pay.id))
    open_hold = book.hold("hold-3", w, m, 100)
    report = verify_ledger(book.engine)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert (report.accounts, report.transfers) == (4, book.n_transfers())
    ids = {"wallet": w, "merchant": m, "bank": book.bank, "p2p": p2p.id, "post": post.id, "void": voided.id,
           "reversal": reversal.id, "open_hold": open_hold.id}
    with book.engine.begin() as conn:
        tamper(conn, ids)
    report = verify_ledger(book.engine)
    assert not report.ok
    assert {c.name for c in report.checks if not c.ok} == failing
    for check in report.checks:
        assert check.violations == len(check.examples) and (check.violations > 0) == (check.name in failing)


# --- limits.py ---------------------------------------------------------------------------

# Asia/Shanghai has kept UTC+8 without daylight saving since 1992.
SHANGHAI = timedelta(hours=8)
TS_US = st.integers(us(1992, 1, 1), us(2200, 1, 1))


def local_date(ts_us: int) -> date:
    return (datetime(1970, 1, 1) + timedelta(microseconds=ts_us) + SHANGHAI).date()


@given(TS_US)
@example(us(2026, 3, 10, 15, 59, 59, 999_999))
@example(us(2026, 3, 10, 16))
@example(us(2026, 12, 31, 16))
@example(us(2028, 2, 28, 16))
def test_day_and_month_keys_follow_the_shanghai_calendar(ts: int) -> None:
    d = local_date(ts)
    assert day_key(ts) == d.year * 10_000 + d.month * 100 + d.day
    assert month_key(ts) == day_key(ts) // 100
    assert limits.local_datetime(ts).utcoffset() == SHANGHAI


def test_local_midnight_is_1600_utc() -> None:
    assert (day_key(us(2026, 3, 10, 15, 59, 59, 999_999)), day_key(us(2026, 3, 10, 16))) == (20260310, 20260311)
    assert (month_key(us(2026, 12, 31, 15, 59, 59, 999_999)), month_key(us(2026, 12, 31, 16))) == (202612, 202701)
    assert day_key(us(2028, 2, 28, 16)) == 20280229


LIMIT = st.one_of(st.none(), st.integers(1, 10**6))
TIERS = st.builds(Tier, name=st.just("t"), per_txn_max=LIMIT, per_day_max=LIMIT, per_month_max=LIMIT, balance_max=LIMIT)


@st.composite
def spent_before(draw: st.DrawFn, now: int) -> Spent:
    """Sums as stored at some earlier moment (same day, same month or older)."""
    earlier = now - draw(st.sampled_from([0, 3_600, 86_400, 40 * 86_400])) * SECOND_US
    return Spent(day_key(earlier), draw(st.integers(0, 10**6)), month_key(earlier), draw(st.integers(0, 10**7)))


@given(st.data(), TS_US)
def test_spent_at_counts_only_the_current_periods(data: st.DataObject, now: int) -> None:
    spent = data.draw(spent_before(now))
    seen = spent.at(now)
    assert (seen.day_key, seen.month_key) == (day_key(now), month_key(now))
    assert seen.day == (spent.day if spent.day_key == day_key(now) else 0)
    assert seen.month == (spent.month if spent.month_key == month_key(now) else 0)
    assert seen.at(now) == seen
    amount = data.draw(st.integers(0, 10**6))
    assert spent.add(amount, now) == Spent(seen.day_key, seen.day + amount, seen.month_key, seen.month + amount)


@given(st.data(), TS_US, TIERS, st.integers(1, 2 * 10**6))
def test_check_outflow_returns_the_new_sums_or_names_the_first_limit_passed(data: st.DataObject, now: int, tier: Tier, amount: int) -> None:
    spent = data.draw(spent_before(now))
    seen = spent.at(now)
    broken = [name for name, limit, value in (("per_txn", tier.per_txn_max, amount), ("per_day", tier.per_day_max, seen.day + amount),
                                              ("per_month", tier.per_month_max, seen.month + amount))
              if limit is not None and value > limit]
    if broken:
        with pytest.raises(RequestError) as info:
            check_outflow(tier, spent, amount, now, field="amount")
        assert (info.value.reject_code, info.value.field) == (RejectCode.LIMIT_EXCEEDED, f"limit.{broken[0]}")
    else:
        new = check_outflow(tier, spent, amount, now)
        assert new == Spent(day_key(now), seen.day + amount, month_key(now), seen.month + amount)


@given(TIERS, st.integers(-(10**6), 2 * 10**6), st.integers(1, 10**6))
def test_check_inflow_refuses_only_above_the_maximum_balance(tier: Tier, balance: int, amount: int) -> None:
    if tier.balance_max is not None and balance + amount > tier.balance_max:
        with pytest.raises(RequestError) as info:
            check_inflow(tier, balance, amount)
        assert (info.value.reject_code, info.value.field) == (RejectCode.LIMIT_EXCEEDED, "limit.balance")
    else:
        check_inflow(tier, balance, amount)


@given(st.data(), TS_US, st.integers(1, 10**6), st.sampled_from([0, 1, 3_600, 86_400, 31 * 86_400]))
def test_give_back_undoes_an_outflow_of_the_same_period(data: st.DataObject, then: int, amount: int, later_s: int) -> None:
    spent = data.draw(spent_before(then))
    after = spent.add(amount, then)
    now = then + later_s * SECOND_US
    back = after.give_back(amount, then, now)
    assert (back.day_key, back.month_key) == (day_key(now), month_key(now))
    assert back.day == (spent.at(then).day if day_key(then) == day_key(now) else 0)
    assert back.month == (spent.at(then).month if month_key(then) == month_key(now) else 0)
    # Never below zero, whatever is given back.
    other = data.draw(st.integers(1, 10**7))
    assume(other > after.at(now).day)
    assert after.give_back(other, now, now).day == 0
