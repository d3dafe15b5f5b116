"""Applying a batch of ledger requests to locked account rows, in memory.

Theory of operation: the driver (``ledger.py``) locks every account row a
batch can touch, loads the transfers it refers to, and hands them to a
:class:`Workspace`. The workspace applies the requests one after another,
exactly as if each were alone: every check (status, currency, balance flags,
limits, overflow, two-phase state, idempotency within the batch) is made
against the state left by the requests before it. It writes nothing; it
produces the rows to insert and the account rows to update, and the driver
writes them in one database transaction. A linked chain is applied on a
snapshot that is dropped if any member fails.

Transfer ids come from ``next_id``, which the driver feeds from ids it drew
under the batch's locks; a request that is rolled back leaves a gap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.limits import Spent, Tier, check_inflow, check_outflow
from simwallet.gateway.ledger.model import (
    DERIVED_KEY_SEP,
    AccountFlags,
    AccountKind,
    AccountStatus,
    Channel,
    Linked,
    Phase,
    PostedTransfer,
    PostPending,
    Request,
    Result,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
    body_hash,
)
from simwallet.gateway.promotions.rules import CampaignRule, Outcome, Usage

_DEBITS_MUST_NOT_EXCEED_CREDITS = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_MUST_NOT_EXCEED_DEBITS = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)

# The running sums are signed 64-bit columns.
SUM_MAX = 2**63 - 1


@dataclass(slots=True)
class AccountRow:
    """A locked account row being worked on."""

    id: int
    ref: str
    kind: AccountKind
    currency: str
    flags: int  # AccountFlags as a plain int: IntFlag arithmetic is slow on the hot path
    status: AccountStatus
    owner: str
    tier: str | None
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    spent: Spent


@dataclass(slots=True)
class CampaignState:
    """An active campaign with the usage rows of the customers in this batch."""

    rule: CampaignRule
    source_account_id: int
    granted_count: int
    granted_fen: int
    usage: dict[str, Usage] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignEvent:
    campaign_id: str
    owner: str
    transfer_id: int
    outcome: str  # an Outcome value, or "revoked"
    bonus_id: int | None
    amount: int
    period_key: str
    ts_us: int


@dataclass(frozen=True)
class Grant:
    """A bonus that was granted for a transfer (what a reversal must take back)."""

    campaign_id: str
    bonus_id: int
    amount: int
    period_key: str


@dataclass
class References:
    """What the batch's requests refer to, as loaded by the driver after locking."""

    transfers: dict[int, PostedTransfer] = field(default_factory=dict)
    # pending id -> phase of the row that resolved it
    resolved: dict[int, Phase] = field(default_factory=dict)
    reversed: set[int] = field(default_factory=set)
    # transfer id -> rows it caused (bonuses)
    caused: dict[int, list[PostedTransfer]] = field(default_factory=dict)
    # transfer id -> grants made for it
    grants: dict[int, list[Grant]] = field(default_factory=dict)
    # (owner, kind, currency) -> account id, for campaign rewards
    owner_accounts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # idempotency key -> (body hash, rows of the original result)
    existing: dict[str, tuple[bytes, list[PostedTransfer]]] = field(default_factory=dict)


class _Journal:
    """An undo log: every change to a workspace goes through it, so that a refused
    request or linked chain is rolled back exactly, at a cost proportional to
    what it changed (not to the size of the batch). Entries are plain tuples
    ``(operation, target, key, old value)``: cheaper than closures on the hot path."""

    def __init__(self) -> None:
        self._undo: list[tuple[int, Any, Any, Any]] = []

    def mark(self) -> int:
        return len(self._undo)

    def rollback(self, mark: int) -> None:
        while len(self._undo) > mark:
            op, target, key, old = self._undo.pop()
            if op == _ATTR:
                setattr(target, key, old)
            elif op == _ITEM:
                target[key] = old
            elif op == _NEW_ITEM:
                del target[key]
            elif op == _APPENDED:
                target.pop()
            else:  # _ADDED
                target.discard(key)

    def forget(self) -> None:
        """Nothing before this point will be rolled back."""
        self._undo.clear()

    def assign(self, obj: object, name: str, value: object) -> None:
        self._undo.append((_ATTR, obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def add_to(self, row: AccountRow, name: str, delta: int) -> None:
        self.assign(row, name, getattr(row, name) + delta)

    def append(self, items: list[Any], item: object) -> None:
        items.append(item)
        self._undo.append((_APPENDED, items, None, None))

    def put(self, mapping: dict[Any, Any], key: object, value: object) -> None:
        if key in mapping:
            self._undo.append((_ITEM, mapping, key, mapping[key]))
        else:
            self._undo.append((_NEW_ITEM, mapping, key, None))
        mapping[key] = value

    def pop(self, mapping: dict[Any, Any], key: object) -> Any:
        old = mapping.pop(key)
        self._undo.append((_ITEM, mapping, key, old))
        return old

    def add(self, items: set[Any], item: object) -> None:
        if item not in items:
            items.add(item)
            self._undo.append((_ADDED, items, item, None))


# Journal operations.
_ATTR, _ITEM, _NEW_ITEM, _APPENDED, _ADDED = range(5)


class Workspace:
    """Applies requests to locked rows; see the module docstring."""

    def __init__(
        self,
        accounts: dict[int, AccountRow],
        refs_to_ids: dict[str, int],
        tiers: dict[str, Tier],
        campaigns: dict[str, CampaignState],
        references: References,
        now_us: int,
        next_id: Callable[[], int],
    ) -> None:
        self._refs_to_ids = refs_to_ids
        self._tiers = tiers
        self._refs = references
        self._now_us = now_us
        self._next_id = next_id
        # Body hash per transfer id. Not journaled: ids are never reused, so a
        # dropped row's entry is simply never read.
        self._digests: dict[int, bytes] = {}
        self._j = _Journal()
        # What the driver writes once the batch is applied.
        self.accounts = accounts
        self.campaigns = campaigns
        self.new_rows: list[PostedTransfer] = []
        self.new_holds: dict[int, int] = {}  # transfer id -> expiry
        self.closed_holds: set[int] = set()
        self.events: list[CampaignEvent] = []
        # Two-phase, reversal and idempotency state as changed by this batch.
        self._resolved = dict(references.resolved)
        self._reversed = set(references.reversed)
        self._seen: dict[str, tuple[bytes, list[PostedTransfer]]] = {}
        self._grants = {k: list(v) for k, v in references.grants.items()}

    # -- applying --------------------------------------------------------------

    def apply(self, item: Request | Linked) -> list[Result]:
        """Apply one batch item; a linked chain yields one result per member."""
        if isinstance(item, Linked):
            return self._apply_linked(item)
        mark = self._j.mark()
        try:
            result = self._apply_one(item)
        except RequestError as exc:
            self._j.rollback(mark)
            return [Result(item.idempotency_key, error=exc)]
        self._j.forget()
        return [result]

    def _apply_linked(self, chain: Linked) -> list[Result]:
        mark = self._j.mark()
        results: list[Result] = []
        for request in chain.requests:
            try:
                results.append(self._apply_one(request))
            except RequestError as failed:
                self._j.rollback(mark)
                others = RequestError(RejectCode.LINKED_EVENT_FAILED, "linked",
                                      f"another transfer of the linked chain failed: {failed}")
                return [Result(r.idempotency_key, error=failed if i == len(results) else others)
                        for i, r in enumerate(chain.requests)]
        self._j.forget()
        return results

    def _apply_one(self, request: Request) -> Result:
        key = request.idempotency_key
        digest = body_hash(request, self._account_ids(request))
        prior = self._seen.get(key) or self._refs.existing.get(key)
        if prior is not None:
            if prior[0] != digest:
                raise RequestError(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key",
                                   f"idempotency key {key!r} was used before for a different request")
            return Result(key, transfers=tuple(prior[1]), duplicate=True)
        start = len(self.new_rows)
        if isinstance(request, Transfer):
            self._transfer(request, digest)
        elif isinstance(request, PostPending | VoidPending):
            phase = Phase.POST if isinstance(request, PostPending) else Phase.VOID
            self._resolve(request.pending_id, key, digest, request.channel, phase)
        else:
            self._reverse(request, digest)
        rows = self.new_rows[start:]
        self._j.put(self._seen, key, (digest, rows))
        return Result(key, transfers=tuple(rows))

    # -- accounts ----------------------------------------------------------------

    def _account_ids(self, request: Request) -> tuple[int | str, int | str] | None:
        """A transfer's accounts as ids, so that naming an account by id or by reference is the same request."""
        if not isinstance(request, Transfer):
            return None
        return tuple(  # type: ignore[return-value]
            self._refs_to_ids.get(ref, ref) if isinstance(ref, str) else ref
            for ref in (request.debit_account, request.credit_account))

    def _account(self, ref: int | str, field_name: str) -> AccountRow:
        account_id = ref if isinstance(ref, int) else self._refs_to_ids.get(ref)
        row = self.accounts.get(account_id) if account_id is not None else None
        if row is None:
            raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, field_name, f"no account {ref!r}")
        return row

    @staticmethod
    def _require_status(row: AccountRow, field_name: str, *, correction: bool) -> None:
        if row.status == AccountStatus.CLOSED:
            raise RequestError(RejectCode.ACCOUNT_CLOSED, field_name, f"account {row.ref} is closed")
        if row.status == AccountStatus.FROZEN and not correction:
            raise RequestError(RejectCode.ACCOUNT_FROZEN, field_name, f"account {row.ref} is frozen")

    def _tier(self, row: AccountRow) -> Tier | None:
        if row.kind != AccountKind.CUSTOMER_WALLET or row.tier is None:
            return None
        return self._tiers.get(row.tier)

    # -- the four kinds of request ---------------------------------------------

    def _transfer(self, request: Transfer, digest: bytes) -> None:
        debit = self._account(request.debit_account, "debit_account")
        credit = self._account(request.credit_account, "credit_account")
        if debit.id == credit.id:
            raise RequestError(RejectCode.ACCOUNTS_MUST_BE_DIFFERENT, "credit_account", "debit and credit account must differ")
        for account, name in ((debit, "debit_account"), (credit, "credit_account")):
            if account.currency != request.currency:
                raise RequestError(RejectCode.CURRENCY_MISMATCH, "currency",
                                   f"{name} {account.ref} holds {account.currency}, the transfer is in {request.currency}")
            self._require_status(account, name, correction=False)
        amount = request.amount
        tier = self._tier(debit)
        if tier is not None:
            self._j.assign(debit, "spent", check_outflow(tier, debit.spent, amount, self._now_us))
        tier = self._tier(credit)
        if tier is not None:
            check_inflow(tier, credit.credits_posted + credit.credits_pending - credit.debits_posted, amount)
        self._check_balances(debit, credit, amount)
        row = self._row(
            key=request.idempotency_key, digest=digest, debit=debit.id, credit=credit.id, amount=amount,
            currency=request.currency, kind=request.kind, channel=request.channel,
            phase=Phase.PENDING if request.pending else Phase.SINGLE, memo=request.memo,
            expires_us=self._now_us + request.timeout_s * 1_000_000 if request.pending else None,
        )
        if request.pending:
            self._j.add_to(debit, "debits_pending", amount)
            self._j.add_to(credit, "credits_pending", amount)
            self._j.put(self.new_holds, row.id, row.expires_us or 0)
        else:
            self._j.add_to(debit, "debits_posted", amount)
            self._j.add_to(credit, "credits_posted", amount)
            self._promote(row, debit, credit)

    def _resolve(self, pending_id: int, key: str, digest: bytes, channel: Channel, phase: Phase) -> None:
        """Post, void or expire the hold ``pending_id``."""
        pending = self._refs.transfers.get(pending_id)
        if pending is None:
            raise RequestError(RejectCode.TRANSFER_NOT_FOUND, "pending_id", f"no transfer {pending_id}")
        if pending.phase != Phase.PENDING:
            raise RequestError(RejectCode.NOT_PENDING, "pending_id", f"transfer {pending.id} is not pending")
        done = self._resolved.get(pending.id)
        if done is not None:
            code, verb = _RESOLVED[done]
            raise RequestError(code, "pending_id", f"transfer {pending.id} was already {verb}")
        posting = phase == Phase.POST
        if posting and pending.expires_us is not None and pending.expires_us <= self._now_us:
            raise RequestError(RejectCode.PENDING_EXPIRED, "pending_id", f"transfer {pending.id} expired")
        debit = self.accounts[pending.debit_account_id]
        credit = self.accounts[pending.credit_account_id]
        for account, name in ((debit, "debit_account"), (credit, "credit_account")):
            self._require_status(account, name, correction=not posting)
        amount = pending.amount
        self._j.add_to(debit, "debits_pending", -amount)
        self._j.add_to(credit, "credits_pending", -amount)
        if posting:
            self._j.add_to(debit, "debits_posted", amount)
            self._j.add_to(credit, "credits_posted", amount)
        elif self._tier(debit) is not None:
            self._j.assign(debit, "spent", debit.spent.give_back(amount, pending.ts_us, self._now_us))
        row = self._row(
            key=key, digest=digest, debit=debit.id, credit=credit.id, amount=amount, currency=pending.currency,
            kind=pending.kind, channel=channel, phase=phase, pending_id=pending.id,
        )
        self._j.put(self._resolved, pending.id, phase)
        if pending.id in self.new_holds:
            self._j.pop(self.new_holds, pending.id)
        else:
            self._j.add(self.closed_holds, pending.id)
        if posting:
            self._promote(row, debit, credit)

    def expire(self, pending_id: int) -> Result:
        """Expire a due hold (driven by the ledger's sweep, not by clients)."""
        key = f"{self._refs.transfers[pending_id].idempotency_key}{DERIVED_KEY_SEP}expire"
        mark = self._j.mark()
        start = len(self.new_rows)
        try:
            self._resolve(pending_id, key, _derived_hash(key), Channel.SYSTEM, Phase.EXPIRE)
        except RequestError as exc:
            self._j.rollback(mark)
            return Result(key, error=exc)
        self._j.forget()
        return Result(key, transfers=tuple(self.new_rows[start:]))

    def _reverse(self, request: Reverse, digest: bytes) -> None:
        original = self._refs.transfers.get(request.transfer_id)
        if original is None:
            raise RequestError(RejectCode.TRANSFER_NOT_FOUND, "transfer_id", f"no transfer {request.transfer_id}")
        if original.phase not in (Phase.SINGLE, Phase.POST) or original.kind == TransferKind.REVERSAL or original.cause_id is not None:
            raise RequestError(RejectCode.NOT_REVERSIBLE, "transfer_id",
                               f"transfer {original.id} ({original.phase.value} {original.kind.value}) cannot be reversed;"
                               " void a pending transfer, reverse the transfer that caused a bonus")
        if original.id in self._reversed:
            raise RequestError(RejectCode.ALREADY_REVERSED, "transfer_id", f"transfer {original.id} was already reversed")
        main = self._reversal_row(original, request.idempotency_key, digest, request.channel, request.memo, cause_id=None)
        for caused in self._refs.caused.get(original.id, []):
            if caused.id in self._reversed:
                continue
            key = f"{request.idempotency_key}{DERIVED_KEY_SEP}rev{DERIVED_KEY_SEP}{caused.id}"
            self._reversal_row(caused, key, _derived_hash(key), request.channel, "", cause_id=main.id)
        for grant in self._j.pop(self._grants, original.id) if original.id in self._grants else []:
            self._revoke(grant, original)

    def _reversal_row(self, original: PostedTransfer, key: str, digest: bytes, channel: Channel, memo: str,
                      cause_id: int | None) -> PostedTransfer:
        debit = self.accounts[original.credit_account_id]
        credit = self.accounts[original.debit_account_id]
        self._require_status(debit, "debit_account", correction=True)
        self._require_status(credit, "credit_account", correction=True)
        self._check_balances(debit, credit, original.amount)
        self._j.add_to(debit, "debits_posted", original.amount)
        self._j.add_to(credit, "credits_posted", original.amount)
        if self._tier(credit) is not None:
            # Spending was counted when the money left: for a posted hold, when the hold was placed.
            hold = self._refs.transfers.get(original.pending_id) if original.pending_id is not None else None
            spent_at = hold.ts_us if hold is not None else original.ts_us
            self._j.assign(credit, "spent", credit.spent.give_back(original.amount, spent_at, self._now_us))
        self._j.add(self._reversed, original.id)
        return self._row(
            key=key, digest=digest, debit=debit.id, credit=credit.id, amount=original.amount,
            currency=original.currency, kind=TransferKind.REVERSAL, channel=channel, phase=Phase.SINGLE,
            reverses_id=original.id, cause_id=cause_id, memo=memo,
        )

    # -- checks and rows ---------------------------------------------------------

    @staticmethod
    def _check_balances(debit: AccountRow, credit: AccountRow, amount: int) -> None:
        if debit.flags & _DEBITS_MUST_NOT_EXCEED_CREDITS and \
                debit.debits_pending + debit.debits_posted + amount > debit.credits_posted:
            raise RequestError(RejectCode.EXCEEDS_CREDITS, "debit_account", f"insufficient funds in {debit.ref}")
        if credit.flags & _CREDITS_MUST_NOT_EXCEED_DEBITS and \
                credit.credits_pending + credit.credits_posted + amount > credit.debits_posted:
            raise RequestError(RejectCode.EXCEEDS_DEBITS, "credit_account", f"{credit.ref} may not be credited beyond its debits")
        for row, sums in ((debit, ("debits_pending", "debits_posted")), (credit, ("credits_pending", "credits_posted"))):
            if getattr(row, sums[0]) + getattr(row, sums[1]) + amount > SUM_MAX:
                raise RequestError(RejectCode.OVERFLOW, "amount", f"the sums of {row.ref} would overflow")

    def _row(self, *, key: str, digest: bytes, debit: int, credit: int, amount: int, currency: str,
             kind: TransferKind, channel: Channel, phase: Phase, memo: str = "", pending_id: int | None = None,
             reverses_id: int | None = None, cause_id: int | None = None, expires_us: int | None = None) -> PostedTransfer:
        row = PostedTransfer(
            id=self._next_id(), idempotency_key=key, debit_account_id=debit, credit_account_id=credit,
            amount=amount, currency=currency, kind=kind, channel=channel, phase=phase, ts_us=self._now_us,
            pending_id=pending_id, reverses_id=reverses_id, cause_id=cause_id, expires_us=expires_us, memo=memo,
        )
        self._j.append(self.new_rows, row)
        self._digests[row.id] = digest
        return row

    def digest_of(self, transfer_id: int) -> bytes:
        return self._digests[transfer_id]

    # -- promotions --------------------------------------------------------------

    def _promote(self, row: PostedTransfer, debit: AccountRow, credit: AccountRow) -> None:
        """Grant the bonuses of every active campaign this posting qualifies for."""
        for state in self.campaigns.values():
            rule = state.rule
            if not rule.qualifies(row.kind, row.amount, row.channel, row.ts_us):
                continue
            owner = _customer(debit, credit)
            if owner is None:
                continue
            period_key = rule.period_key(row.ts_us)
            usage = state.usage.get(owner, Usage(0, None, 0))
            outcome = rule.decide(usage, state.granted_fen, row.ts_us)
            bonus_id: int | None = None
            amount = 0
            if outcome == Outcome.GRANTED:
                mark = self._j.mark()
                try:
                    bonus_id, amount = self._grant(state, row, owner, period_key)
                except RequestError:
                    self._j.rollback(mark)
                    outcome = Outcome.REFUSED_UNPAYABLE
                else:
                    self._j.put(state.usage, owner, usage.after_grant(period_key))
            self._j.append(self.events, CampaignEvent(rule.id, owner, row.id, outcome.value, bonus_id, amount, period_key, row.ts_us))

    def _grant(self, state: CampaignState, row: PostedTransfer, owner: str, period_key: str) -> tuple[int, int]:
        rule = state.rule
        target_id = self._refs.owner_accounts.get((owner, rule.reward.target_account_kind.value, row.currency))
        if target_id is None or target_id not in self.accounts:
            raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, "reward.target_account",
                               f"customer {owner} has no {rule.reward.target_account_kind.value} account for campaign {rule.id}")
        source = self.accounts[state.source_account_id]
        target = self.accounts[target_id]
        amount = rule.reward.amount_fen
        self._require_status(source, "reward.source_account", correction=False)
        self._require_status(target, "reward.target_account", correction=False)
        self._check_balances(source, target, amount)
        self._j.add_to(source, "debits_posted", amount)
        self._j.add_to(target, "credits_posted", amount)
        key = f"{row.idempotency_key}{DERIVED_KEY_SEP}bonus{DERIVED_KEY_SEP}{rule.id}"
        bonus = self._row(
            key=key, digest=_derived_hash(key), debit=source.id, credit=target.id, amount=amount, currency=row.currency,
            kind=TransferKind.PROMOTION_BONUS, channel=Channel.SYSTEM, phase=Phase.SINGLE, cause_id=row.id,
            memo=f"campaign {rule.id}"[:64],
        )
        self._j.assign(state, "granted_count", state.granted_count + 1)
        self._j.assign(state, "granted_fen", state.granted_fen + amount)
        if row.id not in self._grants:
            self._j.put(self._grants, row.id, [])
        self._j.append(self._grants[row.id], Grant(rule.id, bonus.id, amount, period_key))
        return bonus.id, amount

    def _revoke(self, grant: Grant, original: PostedTransfer) -> None:
        state = self.campaigns.get(grant.campaign_id)
        if state is None:
            return
        debit = self.accounts[original.debit_account_id]
        credit = self.accounts[original.credit_account_id]
        owner = _customer(debit, credit) or ""
        usage = state.usage.get(owner, Usage(0, None, 0))
        self._j.put(state.usage, owner, usage.after_revoke(grant.period_key))
        self._j.assign(state, "granted_count", state.granted_count - 1)
        self._j.assign(state, "granted_fen", state.granted_fen - grant.amount)
        self._j.append(self.events, CampaignEvent(grant.campaign_id, owner, original.id, "revoked", grant.bonus_id,
                                            grant.amount, grant.period_key, self._now_us))


_RESOLVED = {
    Phase.POST: (RejectCode.PENDING_ALREADY_POSTED, "posted"),
    Phase.VOID: (RejectCode.PENDING_ALREADY_VOIDED, "voided"),
    Phase.EXPIRE: (RejectCode.PENDING_EXPIRED, "expired"),
}


def _customer(debit: AccountRow, credit: AccountRow) -> str | None:
    for row in (debit, credit):
        if row.kind in (AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_AIRTIME, AccountKind.POINTS):
            return row.owner
    return None


def _derived_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()[:16]

