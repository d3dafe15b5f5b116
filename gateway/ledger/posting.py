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

Transfer ids are not known while applying: new rows get provisional ids
(negative numbers) that the driver replaces after it has drawn real ones.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

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

# The running sums are signed 64-bit columns.
SUM_MAX = 2**63 - 1


@dataclass(slots=True)
class AccountRow:
    """A locked account row being worked on."""

    id: int
    ref: str
    kind: AccountKind
    currency: str
    flags: AccountFlags
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


@dataclass
class _State:
    accounts: dict[int, AccountRow]
    campaigns: dict[str, CampaignState]
    new_rows: list[PostedTransfer]
    new_holds: dict[int, int]
    closed_holds: set[int]
    events: list[CampaignEvent]
    resolved: dict[int, Phase]
    reversed: set[int]
    seen: dict[str, tuple[bytes, list[PostedTransfer]]]
    grants: dict[int, list[Grant]]


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
    ) -> None:
        self._refs_to_ids = refs_to_ids
        self._tiers = tiers
        self._refs = references
        self._now_us = now_us
        self._next_temp_id = -1
        # Body hash per provisional id. Outside the snapshotted state: provisional
        # ids are never reused, so a dropped row's entry is simply never read.
        self._digests: dict[int, bytes] = {}
        self._s = _State(
            accounts=accounts, campaigns=campaigns, new_rows=[], new_holds={}, closed_holds=set(), events=[],
            resolved=dict(references.resolved), reversed=set(references.reversed), seen={},
            grants={k: list(v) for k, v in references.grants.items()},
        )

    # -- results ---------------------------------------------------------------

    @property
    def new_rows(self) -> list[PostedTransfer]:
        return self._s.new_rows

    @property
    def new_holds(self) -> dict[int, int]:
        return self._s.new_holds

    @property
    def closed_holds(self) -> set[int]:
        return self._s.closed_holds

    @property
    def events(self) -> list[CampaignEvent]:
        return self._s.events

    @property
    def accounts(self) -> dict[int, AccountRow]:
        return self._s.accounts

    @property
    def campaigns(self) -> dict[str, CampaignState]:
        return self._s.campaigns

    # -- applying --------------------------------------------------------------

    def apply(self, item: Request | Linked) -> list[Result]:
        """Apply one batch item; a linked chain yields one result per member."""
        if isinstance(item, Linked):
            return self._apply_linked(item)
        snapshot = self._snapshot()
        try:
            return [self._apply_one(item)]
        except RequestError as exc:
            self._s = snapshot
            return [Result(item.idempotency_key, error=exc)]

    def _apply_linked(self, chain: Linked) -> list[Result]:
        snapshot = self._snapshot()
        results: list[Result] = []
        for request in chain.requests:
            try:
                results.append(self._apply_one(request))
            except RequestError as failed:
                self._s = snapshot
                others = RequestError(RejectCode.LINKED_EVENT_FAILED, "linked",
                                      f"another transfer of the linked chain failed: {failed}")
                return [Result(r.idempotency_key, error=failed if i == len(results) else others)
                        for i, r in enumerate(chain.requests)]
        return results

    def _snapshot(self) -> _State:
        # Account rows and campaign states are small; copying those the batch
        # holds is cheaper than undo logs and obviously right.
        return copy.deepcopy(self._s)

    def _apply_one(self, request: Request) -> Result:
        key = request.idempotency_key
        digest = body_hash(request)
        prior = self._s.seen.get(key) or self._refs.existing.get(key)
        if prior is not None:
            if prior[0] != digest:
                raise RequestError(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key",
                                   f"idempotency key {key!r} was used before for a different request")
            return Result(key, transfers=tuple(prior[1]), duplicate=True)
        start = len(self._s.new_rows)
        if isinstance(request, Transfer):
            self._transfer(request, digest)
        elif isinstance(request, PostPending | VoidPending):
            phase = Phase.POST if isinstance(request, PostPending) else Phase.VOID
            self._resolve(request.pending_id, key, digest, request.channel, phase)
        else:
            self._reverse(request, digest)
        rows = self._s.new_rows[start:]
        self._s.seen[key] = (digest, rows)
        return Result(key, transfers=tuple(rows))

    # -- accounts ----------------------------------------------------------------

    def _account(self, ref: int | str, field_name: str) -> AccountRow:
        account_id = ref if isinstance(ref, int) else self._refs_to_ids.get(ref)
        row = self._s.accounts.get(account_id) if account_id is not None else None
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
            debit.spent = check_outflow(tier, debit.spent, amount, self._now_us)
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
            _add(debit, "debits_pending", amount)
            _add(credit, "credits_pending", amount)
            self._s.new_holds[row.id] = row.expires_us or 0
        else:
            _add(debit, "debits_posted", amount)
            _add(credit, "credits_posted", amount)
            self._promote(row, debit, credit)

    def _resolve(self, pending_id: int, key: str, digest: bytes, channel: Channel, phase: Phase) -> None:
        """Post, void or expire the hold ``pending_id``."""
        pending = self._refs.transfers.get(pending_id)
        if pending is None:
            raise RequestError(RejectCode.TRANSFER_NOT_FOUND, "pending_id", f"no transfer {pending_id}")
        if pending.phase != Phase.PENDING:
            raise RequestError(RejectCode.NOT_PENDING, "pending_id", f"transfer {pending.id} is not pending")
        done = self._s.resolved.get(pending.id)
        if done is not None:
            code, verb = _RESOLVED[done]
            raise RequestError(code, "pending_id", f"transfer {pending.id} was already {verb}")
        posting = phase == Phase.POST
        if posting and pending.expires_us is not None and pending.expires_us <= self._now_us:
            raise RequestError(RejectCode.PENDING_EXPIRED, "pending_id", f"transfer {pending.id} expired")
        debit = self._s.accounts[pending.debit_account_id]
        credit = self._s.accounts[pending.credit_account_id]
        for account, name in ((debit, "debit_account"), (credit, "credit_account")):
            self._require_status(account, name, correction=not posting)
        amount = pending.amount
        _add(debit, "debits_pending", -amount)
        _add(credit, "credits_pending", -amount)
        if posting:
            _add(debit, "debits_posted", amount)
            _add(credit, "credits_posted", amount)
        elif self._tier(debit) is not None:
            debit.spent = debit.spent.give_back(amount, pending.ts_us, self._now_us)
        row = self._row(
            key=key, digest=digest, debit=debit.id, credit=credit.id, amount=amount, currency=pending.currency,
            kind=pending.kind, channel=channel, phase=phase, pending_id=pending.id,
        )
        self._s.resolved[pending.id] = phase
        if pending.id in self._s.new_holds:
            del self._s.new_holds[pending.id]
        else:
            self._s.closed_holds.add(pending.id)
        if posting:
            self._promote(row, debit, credit)

    def expire(self, pending_id: int) -> Result:
        """Expire a due hold (driven by the ledger's sweep, not by clients)."""
        key = f"{self._refs.transfers[pending_id].idempotency_key}{DERIVED_KEY_SEP}expire"
        snapshot = self._snapshot()
        start = len(self._s.new_rows)
        try:
            self._resolve(pending_id, key, _derived_hash(key), Channel.SYSTEM, Phase.EXPIRE)
        except RequestError as exc:
            self._s = snapshot
            return Result(key, error=exc)
        return Result(key, transfers=tuple(self._s.new_rows[start:]))

    def _reverse(self, request: Reverse, digest: bytes) -> None:
        original = self._refs.transfers.get(request.transfer_id)
        if original is None:
            raise RequestError(RejectCode.TRANSFER_NOT_FOUND, "transfer_id", f"no transfer {request.transfer_id}")
        if original.phase not in (Phase.SINGLE, Phase.POST) or original.kind == TransferKind.REVERSAL or original.cause_id is not None:
            raise RequestError(RejectCode.NOT_REVERSIBLE, "transfer_id",
                               f"transfer {original.id} ({original.phase.value} {original.kind.value}) cannot be reversed;"
                               " void a pending transfer, reverse the transfer that caused a bonus")
        if original.id in self._s.reversed:
            raise RequestError(RejectCode.ALREADY_REVERSED, "transfer_id", f"transfer {original.id} was already reversed")
        main = self._reversal_row(original, request.idempotency_key, digest, request.channel, request.memo, cause_id=None)
        for caused in self._refs.caused.get(original.id, []):
            if caused.id in self._s.reversed:
                continue
            key = f"{request.idempotency_key}{DERIVED_KEY_SEP}rev{DERIVED_KEY_SEP}{caused.id}"
            self._reversal_row(caused, key, _derived_hash(key), request.channel, "", cause_id=main.id)
        for grant in self._s.grants.pop(original.id, []):
            self._revoke(grant, original)

    def _reversal_row(self, original: PostedTransfer, key: str, digest: bytes, channel: Channel, memo: str,
                      cause_id: int | None) -> PostedTransfer:
        debit = self._s.accounts[original.credit_account_id]
        credit = self._s.accounts[original.debit_account_id]
        self._require_status(debit, "debit_account", correction=True)
        self._require_status(credit, "credit_account", correction=True)
        self._check_balances(debit, credit, original.amount)
        _add(debit, "debits_posted", original.amount)
        _add(credit, "credits_posted", original.amount)
        if self._tier(credit) is not None:
            credit.spent = credit.spent.give_back(original.amount, original.ts_us, self._now_us)
        self._s.reversed.add(original.id)
        return self._row(
            key=key, digest=digest, debit=debit.id, credit=credit.id, amount=original.amount,
            currency=original.currency, kind=TransferKind.REVERSAL, channel=channel, phase=Phase.SINGLE,
            reverses_id=original.id, cause_id=cause_id, memo=memo,
        )

    # -- checks and rows ---------------------------------------------------------

    @staticmethod
    def _check_balances(debit: AccountRow, credit: AccountRow, amount: int) -> None:
        if debit.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and \
                debit.debits_pending + debit.debits_posted + amount > debit.credits_posted:
            raise RequestError(RejectCode.EXCEEDS_CREDITS, "debit_account", f"insufficient funds in {debit.ref}")
        if credit.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and \
                credit.credits_pending + credit.credits_posted + amount > credit.debits_posted:
            raise RequestError(RejectCode.EXCEEDS_DEBITS, "credit_account", f"{credit.ref} may not be credited beyond its debits")
        for row, sums in ((debit, ("debits_pending", "debits_posted")), (credit, ("credits_pending", "credits_posted"))):
            if getattr(row, sums[0]) + getattr(row, sums[1]) + amount > SUM_MAX:
                raise RequestError(RejectCode.OVERFLOW, "amount", f"the sums of {row.ref} would overflow")

    def _row(self, *, key: str, digest: bytes, debit: int, credit: int, amount: int, currency: str,
             kind: TransferKind, channel: Channel, phase: Phase, memo: str = "", pending_id: int | None = None,
             reverses_id: int | None = None, cause_id: int | None = None, expires_us: int | None = None) -> PostedTransfer:
        row = PostedTransfer(
            id=self._next_temp_id, idempotency_key=key, debit_account_id=debit, credit_account_id=credit,
            amount=amount, currency=currency, kind=kind, channel=channel, phase=phase, ts_us=self._now_us,
            pending_id=pending_id, reverses_id=reverses_id, cause_id=cause_id, expires_us=expires_us, memo=memo,
        )
        self._next_temp_id -= 1
        self._s.new_rows.append(row)
        self._digests[row.id] = digest
        return row

    def digest_of(self, temp_id: int) -> bytes:
        return self._digests[temp_id]

    # -- promotions --------------------------------------------------------------

    def _promote(self, row: PostedTransfer, debit: AccountRow, credit: AccountRow) -> None:
        """Grant the bonuses of every active campaign this posting qualifies for."""
        for state in self._s.campaigns.values():
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
                bonus_id, amount = self._grant(state, row, owner, period_key)
                state.usage[owner] = usage.after_grant(period_key)
            self._s.events.append(CampaignEvent(rule.id, owner, row.id, outcome.value, bonus_id, amount, period_key, row.ts_us))

    def _grant(self, state: CampaignState, row: PostedTransfer, owner: str, period_key: str) -> tuple[int, int]:
        rule = state.rule
        target_id = self._refs.owner_accounts.get((owner, rule.reward.target_account_kind.value, row.currency))
        if target_id is None or target_id not in self._s.accounts:
            raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, "reward.target_account",
                               f"customer {owner} has no {rule.reward.target_account_kind.value} account for campaign {rule.id}")
        source = self._s.accounts[state.source_account_id]
        target = self._s.accounts[target_id]
        amount = rule.reward.amount_fen
        self._require_status(source, "reward.source_account", correction=False)
        self._require_status(target, "reward.target_account", correction=False)
        self._check_balances(source, target, amount)
        _add(source, "debits_posted", amount)
        _add(target, "credits_posted", amount)
        key = f"{row.idempotency_key}{DERIVED_KEY_SEP}bonus{DERIVED_KEY_SEP}{rule.id}"
        bonus = self._row(
            key=key, digest=_derived_hash(key), debit=source.id, credit=target.id, amount=amount, currency=row.currency,
            kind=TransferKind.PROMOTION_BONUS, channel=Channel.SYSTEM, phase=Phase.SINGLE, cause_id=row.id,
            memo=f"campaign {rule.id}"[:64],
        )
        state.granted_count += 1
        state.granted_fen += amount
        self._s.grants.setdefault(row.id, []).append(Grant(rule.id, bonus.id, amount, period_key))
        return bonus.id, amount

    def _revoke(self, grant: Grant, original: PostedTransfer) -> None:
        state = self._s.campaigns.get(grant.campaign_id)
        if state is None:
            return
        debit = self._s.accounts[original.debit_account_id]
        credit = self._s.accounts[original.credit_account_id]
        owner = _customer(debit, credit) or ""
        usage = state.usage.get(owner, Usage(0, None, 0))
        state.usage[owner] = usage.after_revoke(grant.period_key)
        state.granted_count -= 1
        state.granted_fen -= grant.amount
        self._s.events.append(CampaignEvent(grant.campaign_id, owner, original.id, "revoked", grant.bonus_id,
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


def _add(row: AccountRow, name: str, delta: int) -> None:
    setattr(row, name, getattr(row, name) + delta)


def _derived_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()[:16]

