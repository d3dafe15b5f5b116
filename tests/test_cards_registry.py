"""Card registration on SQLite and PostgreSQL: one transaction for the card and its customer's wallet, idempotent.

Runs against real databases (the ``db_url`` fixture), including threads that
register the same card at the same moment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from simwallet.applet.protocols.efs import luhn_check_digit
from simwallet.gateway.cards import (
    REGISTER_MANY_MAX,
    AcceptanceChannel,
    CardRegistration,
    CardRegistry,
    CardStatus,
    RegistrationResult,
)
from simwallet.gateway.errors import RequestError
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.model import AccountKind
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import accounts, cards

T0_US = 1_795_000_000_000_000
ICCID = "8986001234567890123"


class Clock:
    def __init__(self) -> None:
        self.now_us = T0_US

    def __call__(self) -> int:
        self.now_us += 1_000
        return self.now_us


@pytest.fixture
def registry(db_url: str) -> Iterator[CardRegistry]:
    engine = open_engine(db_url)
    clock = Clock()
    try:
        yield CardRegistry(engine, Ledger(engine, clock=clock), clock=clock)
    finally:
        engine.dispose()


def registration(
    iccid: str = ICCID, imsi: str = "460001234567890", msisdn: str = "+8613800138000", customer: str = "customer:C1", **changes: Any
) -> CardRegistration:
    base = CardRegistration(
        iccid=iccid,
        imsi=imsi,
        msisdn=msisdn,
        customer_ref=customer,
        profile="cmcc-wallet-v1",
        channel=AcceptanceChannel.SERVICE_HALL,
        clerk="clerk-017",
        scp03_kvn=0x30,
        ota_key_version=1,
        wallet_key_version=1,
        personalized_at=T0_US - 60_000_000,
        details={"batch": "B-2026-11", "reader": "Virtual PCD 00 00"},
    )
    return replace(base, **changes)


def counts(registry: CardRegistry) -> tuple[int, int]:
    with registry.engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(cards)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one(),
        )


def test_register_opens_the_wallet_and_stores_the_card(registry: CardRegistry) -> None:
    result = registry.register(registration())
    assert result.created is True
    card = result.card
    assert (card.iccid, card.imsi, card.msisdn, card.customer_ref) == (ICCID, "460001234567890", "8613800138000", "customer:C1")
    assert card.status is CardStatus.PERSONALIZED
    assert card.channel is AcceptanceChannel.SERVICE_HALL
    assert (card.scp03_kvn, card.ota_key_version, card.wallet_key_version) == (0x30, 1, 1)
    assert card.registered_at > T0_US and card.personalized_at == T0_US - 60_000_000
    assert dict(card.details) == {"batch": "B-2026-11", "reader": "Virtual PCD 00 00"}
    [wallet] = result.accounts
    assert result.opened == result.accounts
    assert (wallet.kind, wallet.owner, wallet.tier, wallet.balance) == (AccountKind.CUSTOMER_WALLET, "customer:C1", "basic", 0)
    assert registry.ledger.account(wallet.id).ref == "customer:C1/customer_wallet"
    assert registry.get(ICCID) == card
    assert registry.by_msisdn("8613800138000") == card
    assert registry.by_msisdn("+8613800138000") == card
    assert registry.get("8986001234567890124") is None
    assert registry.by_msisdn("8613900000000") is None


def test_same_registration_again_writes_nothing(registry: CardRegistry) -> None:
    first = registry.register(registration())
    before = counts(registry)
    again = registry.register(registration())
    assert again == RegistrationResult(first.card, False, first.accounts, ())
    assert counts(registry) == before == (1, 1)


def test_registration_again_keeps_the_first_personalization_time(registry: CardRegistry) -> None:
    first = registry.register(registration())
    again = registry.register(registration(personalized_at=T0_US))
    assert again.created is False
    assert again.card.personalized_at == first.card.personalized_at == T0_US - 60_000_000
    assert counts(registry) == (1, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msisdn", "8613800138001"),
        ("imsi", "460001234567891"),
        ("customer_ref", "customer:C2"),
        ("profile", "other"),
        ("channel", AcceptanceChannel.FIELD),
        ("clerk", "clerk-018"),
        ("scp03_kvn", 0x31),
        ("ota_key_version", 2),
        ("wallet_key_version", 2),
        ("details", {"batch": "B-2026-12"}),
    ],
)
def test_same_iccid_with_other_values_is_a_conflict(registry: CardRegistry, field: str, value: object) -> None:
    registry.register(registration())
    before = counts(registry)
    with pytest.raises(RequestError) as info:
        registry.register(replace(registration(), **{field: value}))
    assert info.value.code == "idempotency_conflict"
    assert info.value.field == field
    assert ICCID in info.value.message
    assert counts(registry) == before


@pytest.mark.parametrize("field", ["imsi", "msisdn"])
def test_number_on_another_card_is_refused_naming_that_card(registry: CardRegistry, field: str) -> None:
    registry.register(registration())
    other = registration(iccid="8986001234567890124", imsi="460009999999999", msisdn="8613911112222", customer="customer:C9")
    before = counts(registry)
    with pytest.raises(RequestError) as info:
        registry.register(replace(other, **{field: getattr(registration(), field)}))
    assert (info.value.code, info.value.field) == ("field_invalid", field)
    assert ICCID in info.value.message
    assert counts(registry) == before  # the new customer got no wallet either


def test_second_card_of_a_customer_opens_nothing(registry: CardRegistry) -> None:
    first = registry.register(registration())
    second = registry.register(registration(iccid="89860012345678901245", imsi="460001234567899", msisdn="8613800138009"))
    assert second.created is True
    assert second.opened == ()
    assert [a.id for a in second.accounts] == [a.id for a in first.accounts]
    assert [c.iccid for c in registry.list(customer_ref="customer:C1")] == [ICCID, "89860012345678901245"]


def test_an_existing_wallet_is_reused(registry: CardRegistry) -> None:
    wallet = registry.ledger.open_account(AccountKind.CUSTOMER_WALLET, "customer:C1", ref="C1/wallet", tier="verified")
    result = registry.register(registration())
    assert result.opened == ()
    assert [a.id for a in result.accounts] == [wallet.id]
    assert result.accounts[0].tier == "verified"


def test_unknown_tier_is_refused_and_nothing_written(registry: CardRegistry) -> None:
    with pytest.raises(RequestError) as info:
        registry.register(registration(tier="platinum"))
    assert info.value.field == "tier"
    assert counts(registry) == (0, 0)


def test_concurrent_registrations_of_one_card_create_it_once(registry: CardRegistry) -> None:
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    results: list[RegistrationResult] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(registry.register(registration()))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(r.created for r in results) == [False] * (threads_n - 1) + [True]
    assert len({r.card.registered_at for r in results}) == 1
    assert counts(registry) == (1, 1)


def test_concurrent_cards_of_one_new_customer_share_one_wallet(registry: CardRegistry) -> None:
    threads_n = 4
    barrier = threading.Barrier(threads_n)
    results: list[RegistrationResult] = []

    def worker(n: int) -> None:
        barrier.wait()
        results.append(
            registry.register(registration(iccid=f"898600123456789012{n}", imsi=f"46000123456780{n}", msisdn=f"861380013800{n}"))
        )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == threads_n and all(r.created for r in results)
    assert sum(len(r.opened) for r in results) == 1
    assert len({r.accounts[0].id for r in results}) == 1
    assert counts(registry) == (threads_n, 1)


def test_status_transitions(registry: CardRegistry) -> None:
    registry.register(registration())
    assert registry.set_status(ICCID, "active").status is CardStatus.ACTIVE
    assert registry.set_status(ICCID, CardStatus.ACTIVE).status is CardStatus.ACTIVE  # again: no change
    assert registry.set_status(ICCID, "blocked").status is CardStatus.BLOCKED
    assert registry.set_status(ICCID, "active").status is CardStatus.ACTIVE
    assert registry.set_status(ICCID, "retired").status is CardStatus.RETIRED
    with pytest.raises(RequestError) as info:
        registry.set_status(ICCID, "active")
    assert info.value.field == "status" and "retired" in info.value.message
    with pytest.raises(RequestError) as info:
        registry.set_status(ICCID, "lost")
    assert info.value.field == "status"
    with pytest.raises(RequestError) as info:
        registry.set_status("8986001234567890999", "active")
    assert info.value.field == "iccid"
    # A retired card still answers by its number; the repeat of its registration is still a repeat.
    assert registry.by_msisdn("8613800138000") is not None
    assert registry.register(registration()).created is False


def test_list_filters_and_pages(registry: CardRegistry) -> None:
    for n in range(5):
        registry.register(
            registration(
                iccid=f"898600123456789012{n}", imsi=f"46000123456780{n}", msisdn=f"861380013800{n}", customer=f"customer:C{n % 2}"
            )
        )
    registry.set_status("8986001234567890123", "active")
    everything = registry.list()
    assert [c.iccid[-1] for c in everything] == ["0", "1", "2", "3", "4"]
    assert [c.iccid[-1] for c in registry.list(limit=2, after_iccid=everything[1].iccid)] == ["2", "3"]
    assert [c.iccid[-1] for c in registry.list(customer_ref="customer:C1")] == ["1", "3"]
    assert [c.iccid[-1] for c in registry.list(status="active")] == ["3"]
    with pytest.raises(RequestError):
        registry.list(limit=0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"iccid": "898600123456789012"}, "iccid"),
        ({"iccid": "8986001234567890ABC"}, "iccid"),
        ({"imsi": "46000"}, "imsi"),
        ({"imsi": "4600012345678901"}, "imsi"),
        ({"msisdn": "013800138000"}, "msisdn"),
        ({"msisdn": "+86 138 0013 8000"}, "msisdn"),
        ({"customer_ref": "C1"}, "customer_ref"),
        ({"customer_ref": "customer:C1/x"}, "customer_ref"),
        ({"customer_ref": "customer:" + "x" * 40}, "customer_ref"),
        ({"profile": ""}, "profile"),
        ({"channel": "shop"}, "channel"),
        ({"clerk": "a\nb"}, "clerk"),
        ({"scp03_kvn": 0x80}, "scp03_kvn"),
        ({"ota_key_version": 0}, "ota_key_version"),
        ({"wallet_key_version": True}, "wallet_key_version"),
        ({"personalized_at": -1}, "personalized_at"),
        ({"details": {"pin1": "1234"}}, "details"),
        ({"details": {"ADM-1": "x"}}, "details"),
        ({"details": {"ota_kic": "x"}}, "details"),
        ({"details": {"blob": b"bytes"}}, "details"),
        ({"details": {"big": "x" * 5000}}, "details"),
    ],
)
def test_bad_registrations_are_refused_by_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as info:
        registration(**changes)
    assert info.value.field == field
    assert "1234" not in str(info.value)  # a refused secret is not echoed


def test_nothing_secret_is_stored(registry: CardRegistry) -> None:
    registry.register(registration())
    columns = {column["name"] for column in sa.inspect(registry.engine).get_columns("cards")}
    assert columns == {
        "iccid",
        "imsi",
        "msisdn",
        "customer_ref",
        "profile",
        "channel",
        "clerk",
        "scp03_kvn",
        "ota_key_version",
        "wallet_key_version",
        "status",
        "personalized_at",
        "registered_at",
        "details",
    }


def test_registry_and_ledger_must_share_the_database(db_url: str, tmp_path: Path) -> None:
    engine, other = open_engine(db_url), open_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    try:
        with pytest.raises(ValueError, match="same database"):
            CardRegistry(engine, Ledger(other))
    finally:
        engine.dispose()
        other.dispose()


def test_holders_finds_cards_by_any_identity_in_chunks(registry: CardRegistry) -> None:
    from simwallet.gateway import cards as cards_module

    for n in range(3):
        registry.register(registration(iccid=f"898600123456789012{n}", imsi=f"46000123456780{n}", msisdn=f"861380013800{n}"))
    wanted_imsis = [f"46000123456780{n}" for n in (1, 2)] + [f"4600099{n:08d}" for n in range(cards_module.LOOKUP_CHUNK_MAX + 1)]
    found = registry.holders({"iccid": ["8986001234567890120"], "imsi": wanted_imsis, "msisdn": []})
    assert sorted(found) == [(f"898600123456789012{n}", f"46000123456780{n}", f"861380013800{n}") for n in range(3)]
    assert registry.holders({"msisdn": ["8613900000000"]}) == []
    with pytest.raises(ValueError, match="not 'customer_ref'"):
        registry.holders({"customer_ref": ["customer:C1"]})


# --- groups (a batch's finished cards) ------------------------------------------------------------------


def _iccid(n: int) -> str:
    body = f"898600123456780{n:03d}"
    return body + str(luhn_check_digit(body))


def _card(n: int, customer: str) -> CardRegistration:
    return registration(iccid=_iccid(n), imsi=f"46000765432{n:04d}", msisdn=f"86139001{n:05d}", customer=customer)


def test_register_many_registers_a_group_in_one_transaction(registry: CardRegistry) -> None:
    repeat = registry.register(registration())
    group = [_card(1, "customer:C2"), registration(), _card(2, "customer:C3"), _card(3, "customer:C2")]
    results = registry.register_many(group)
    assert [r.card.iccid for r in results] == [g.iccid for g in group]
    assert [r.created for r in results] == [True, False, True, True]
    assert results[1] == RegistrationResult(repeat.card, False, repeat.accounts, ())
    c2_wallet = results[0].opened
    assert len(c2_wallet) == 1 and c2_wallet[0].owner == "customer:C2" and c2_wallet[0].tier == "basic"
    assert results[3].opened == () and results[3].accounts == c2_wallet  # the customer's second card opens nothing
    assert len(results[2].opened) == 1 and results[2].opened[0].owner == "customer:C3"
    assert counts(registry) == (4, 3)
    assert len({r.card.registered_at for r in results if r.created}) == 1  # one transaction, one clock reading
    assert registry.get(_iccid(3)) == results[3].card
    # The same group again is a repeat for every card.
    again = registry.register_many(group)
    assert [r.created for r in again] == [False] * 4 and [r.card for r in again] == [r.card for r in results]
    assert counts(registry) == (4, 3)


def test_register_many_keeps_none_of_the_group_when_one_card_is_refused(registry: CardRegistry) -> None:
    registry.register(registration())
    clash = replace(_card(2, "customer:C3"), msisdn="+8613800138000")  # the first card's MSISDN
    with pytest.raises(RequestError) as info:
        registry.register_many([_card(1, "customer:C2"), clash])
    assert (info.value.field, info.value.code) == ("msisdn", "field_invalid") and ICCID in info.value.message
    assert counts(registry) == (1, 1)
    assert registry.get(_iccid(1)) is None


def test_register_many_sees_clashes_within_the_group(registry: CardRegistry) -> None:
    first = _card(1, "customer:C2")
    with pytest.raises(RequestError) as info:
        registry.register_many([first, replace(_card(2, "customer:C3"), imsi=first.imsi)])
    assert info.value.field == "imsi" and _iccid(1) in info.value.message
    with pytest.raises(RequestError) as info:
        registry.register_many([first, replace(first, clerk="clerk-999")])
    assert (info.value.code, info.value.field) == ("idempotency_conflict", "clerk")
    assert counts(registry) == (0, 0)
    once, twice = registry.register_many([first, first])
    assert (once.created, twice.created) == (True, False) and once.card == twice.card
    assert counts(registry) == (1, 1)


@pytest.mark.parametrize("size", [0, REGISTER_MANY_MAX + 1])
def test_register_many_takes_a_bounded_group(registry: CardRegistry, size: int) -> None:
    with pytest.raises(ValueError, match="register_many takes"):
        registry.register_many([registration()] * size)
