"""Tests of simwallet.gateway.promotions.rules: campaign files (满百送30), their schema, time and the grant decision."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger import model
from simwallet.gateway.ledger.model import ACCOUNT_REF_LEN_MAX, AccountKind, Channel, TransferKind
from simwallet.gateway.money import AMOUNT_FEN_MAX, AMOUNT_TEXT_LEN_MAX
from simwallet.gateway.promotions import rules
from simwallet.gateway.promotions.campaign_file import CAMPAIGN_FILE_BYTES_MAX, CAMPAIGN_NESTING_DEPTH_MAX, campaign_schema
from simwallet.gateway.promotions.rules import (
    CAMPAIGN_DAYS_MAX,
    CAMPAIGN_DESCRIPTION_LEN_MAX,
    CAMPAIGN_ID_LEN_MAX,
    CAMPAIGN_NAME_LEN_MAX,
    CUSTOMER_ACCOUNT_KINDS,
    GRANTS_PER_CUSTOMER_MAX,
    TIMEZONE_LEN_MAX,
    TRIGGER_KINDS,
    TS_US_MAX,
    TS_US_MIN,
    CampaignRule,
    Caps,
    Outcome,
    Period,
    PeriodCap,
    Reward,
    Trigger,
    Usage,
    datetime_from_ts_us,
    period_key_of,
    ts_us_from_datetime,
)

ROOT = Path(__file__).resolve().parents[1]
SEED_PATH = ROOT / "cards" / "promotions" / "manbai-song30.yaml"
SEED_TEXT = SEED_PATH.read_text(encoding="utf-8")
SCHEMA = campaign_schema()
SOURCE = "manbai.yaml"


def us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Microseconds since the epoch of a UTC wall-clock time."""
    return ts_us_from_datetime(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def load(text: str) -> CampaignRule:
    return CampaignRule.from_yaml(text, SOURCE)


def edited(old: str, new: str) -> str:
    assert SEED_TEXT.count(old) == 1, old
    return SEED_TEXT.replace(old, new)


def line_of(text: str, needle: str) -> int:
    found = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def refused(text: str) -> RequestError:
    with pytest.raises(RequestError) as info:
        load(text)
    error = info.value
    assert error.reject_code is RejectCode.CAMPAIGN_INVALID
    assert error.code == "campaign_invalid"
    assert isinstance(error, ValueError)
    return error


SEED = load(SEED_TEXT)


# --- The seed campaign ---------------------------------------------------------------


def test_seed_file_loads_as_the_business_documents_describe_it() -> None:
    rule = CampaignRule.from_yaml(SEED_TEXT, SEED_PATH.name)
    assert rule.id == "manbai-song30-2026"
    assert rule.name == "满百送30"
    assert rule.name_en == "Top up 100, get 30"
    assert rule.description is not None and "100 CNY" in rule.description
    assert (rule.start, rule.end, rule.timezone) == (date(2026, 5, 16), date(2026, 8, 15), "Asia/Shanghai")
    assert rule.trigger == Trigger(
        TransferKind.AIRTIME_TOPUP, 10_000, frozenset({Channel.SMS, Channel.USSD, Channel.STK, Channel.COUNTER, Channel.POS}),
    )
    assert rule.reward == Reward(3_000, "promo-expense", AccountKind.CUSTOMER_AIRTIME)
    assert rule.caps == Caps(PeriodCap(Period.MONTH, 1), 3, 30_000_000)
    assert rule == SEED


def test_seed_file_is_valid_against_the_schema_once_dates_are_text() -> None:
    data = yaml.safe_load(SEED_TEXT)
    assert isinstance(data["window"]["start"], date)  # what plain PyYAML makes of an unquoted date
    data["window"] = {key: value.isoformat() if isinstance(value, date) else value for key, value in data["window"].items()}
    Draft202012Validator(SCHEMA).validate(data)


def test_seed_reward_line_is_named_in_errors() -> None:
    # The example of the brief: an error in reward.amount names the file and the line.
    text = edited('amount: "30.00"', "amount: 30.00")
    error = refused(text)
    assert error.field == "reward.amount"
    assert f"{SOURCE}:{line_of(text, 'amount: 30.00')}: reward.amount:" in error.message
    assert "quotes" in error.message


# --- Canonical form and round trips ---------------------------------------------------


def test_round_trip_through_mapping_json_and_yaml() -> None:
    mapping = SEED.to_mapping()
    assert CampaignRule.from_mapping(mapping) == SEED
    assert CampaignRule.from_json(SEED.to_json()) == SEED
    assert load(yaml.safe_dump(mapping, allow_unicode=True)) == SEED
    Draft202012Validator(SCHEMA).validate(mapping)


def test_to_mapping_is_the_canonical_form() -> None:
    assert SEED.to_mapping() == {
        "id": "manbai-song30-2026",
        "name": "满百送30",
        "name_en": "Top up 100, get 30",
        "description": SEED.description,
        "window": {"start": "2026-05-16", "end": "2026-08-15", "timezone": "Asia/Shanghai"},
        "trigger": {"kind": "airtime_topup", "amount_min": "100.00", "channels": ["sms", "ussd", "stk", "counter", "pos"]},
        "reward": {"amount": "30.00", "source_account": "promo-expense", "target_account_kind": "customer_airtime"},
        "caps": {"per_period": {"period": "month", "count": 1}, "per_campaign": 3, "budget": "300000.00"},
    }


def test_to_json_is_sorted_compact_and_keeps_chinese() -> None:
    text = SEED.to_json()
    assert "满百送30" in text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_optional_fields_are_left_out_of_the_canonical_form() -> None:
    rule = dataclasses.replace(SEED, name_en=None, description=None, trigger=Trigger(TransferKind.AIRTIME_TOPUP, 1), caps=Caps())
    mapping = rule.to_mapping()
    assert "name_en" not in mapping and "description" not in mapping
    assert "channels" not in mapping["trigger"]
    assert mapping["caps"] == {}
    assert CampaignRule.from_mapping(mapping) == rule


def test_from_mapping_accepts_dates_read_only_mappings_and_tuples() -> None:
    mapping = SEED.to_mapping()
    mapping["window"] = MappingProxyType({"start": date(2026, 5, 16), "end": date(2026, 8, 15)})
    mapping["trigger"] = {**mapping["trigger"], "channels": ("sms", "ussd", "stk", "counter", "pos")}
    assert CampaignRule.from_mapping(MappingProxyType(mapping)) == SEED  # the time zone defaults to Asia/Shanghai


def test_quoted_dates_are_accepted() -> None:
    assert load(edited("start: 2026-05-16", 'start: "2026-05-16"')) == SEED


def test_from_mapping_refuses_a_datetime_for_a_date() -> None:
    mapping = SEED.to_mapping()
    mapping["window"]["start"] = datetime(2026, 5, 16, tzinfo=UTC)
    with pytest.raises(RequestError) as info:
        CampaignRule.from_mapping(mapping)
    assert info.value.field == "window.start"
    assert info.value.message.startswith("<mapping>: window.start:")


def test_from_json_refuses_junk() -> None:
    with pytest.raises(RequestError) as info:
        CampaignRule.from_json("{not json", "row 7")
    assert info.value.reject_code is RejectCode.CAMPAIGN_INVALID
    assert info.value.message.startswith("row 7: not JSON")


def test_budget_of_exactly_one_reward_is_accepted() -> None:
    assert load(edited('budget: "300000.00"', 'budget: "30.00"')).caps.budget_fen == 3_000


def test_per_period_count_equal_to_per_campaign_is_accepted() -> None:
    assert load(edited("count: 1}", "count: 3}")).caps.per_period == PeriodCap(Period.MONTH, 3)


def test_longest_window_is_accepted() -> None:
    rule = load(edited("end: 2026-08-15", "end: 2027-05-16"))  # 2026-05-16 .. 2027-05-16: 366 days with both ends
    assert (rule.end - rule.start).days + 1 == CAMPAIGN_DAYS_MAX


def test_one_day_campaign_is_accepted() -> None:
    assert load(edited("end: 2026-08-15", "end: 2026-05-16")).end == date(2026, 5, 16)


def test_without_timezone_the_default_is_shanghai() -> None:
    text = SEED_TEXT.replace("  timezone: Asia/Shanghai    # the window and the calendar months are counted here\n", "")
    assert "timezone" not in text
    assert load(text) == SEED


# --- Refusals: field and line ----------------------------------------------------------

# (old text, new text, field, text of the line the message must name)
INVALID = [
    pytest.param("id: manbai-song30-2026", "id: Manbai-2026", "id", "id: Manbai", id="id-upper-case"),
    pytest.param("id: manbai-song30-2026", "id: mb", "id", "id: mb", id="id-too-short"),
    pytest.param("id: manbai-song30-2026", f"id: m{'x' * CAMPAIGN_ID_LEN_MAX}", "id", "id: m", id="id-too-long"),
    pytest.param("name: 满百送30", "name: ' 满百送30'", "name", "name: ' ", id="name-leading-space"),
    pytest.param("name: 满百送30", f"name: {'满' * (CAMPAIGN_NAME_LEN_MAX + 1)}", "name", "name: 满满", id="name-too-long"),
    pytest.param("name_en: Top up 100, get 30", "name_en: ''", "name_en", "name_en:", id="name-en-empty"),
    pytest.param("name: 满百送30", "name: 30", "name", "name: 30", id="name-a-number"),
    pytest.param("id: manbai-song30-2026", "id: manbai-song30-2026\ncolour: red", "colour", "colour:", id="unknown-top-level-field"),
    pytest.param(
        "  channels: [sms, ussd, stk, counter, pos]", "  channels: [sms]\n  min_balance: \"5.00\"",
        "trigger.min_balance", "min_balance", id="unknown-trigger-field",
    ),
    pytest.param("per_period: {period: month, count: 1}", "per_period: {period: month, count: 1, per: 2}",
                 "caps.per_period.per", "per_period:", id="unknown-nested-field"),
    pytest.param("start: 2026-05-16", "start: 2026-02-30", "window.start", "start:", id="impossible-date"),
    pytest.param("start: 2026-05-16", "start: 2026-05-16 10:00:00", "window.start", "start:", id="date-with-time"),
    pytest.param("start: 2026-05-16", "start: 16.05.2026", "window.start", "start:", id="date-not-iso"),
    pytest.param("start: 2026-05-16", "start: 20260516", "window.start", "start:", id="date-a-number"),
    pytest.param("end: 2026-08-15", "end: 2026-05-15", "window.end", "end:", id="end-before-start"),
    pytest.param("end: 2026-08-15", "end: 2027-05-17", "window.end", "end:", id="window-367-days"),
    pytest.param("timezone: Asia/Shanghai", "timezone: Mars/Olympus_Mons", "window.timezone", "timezone:", id="unknown-timezone"),
    pytest.param("timezone: Asia/Shanghai", "timezone: asia/shanghai", "window.timezone", "timezone:", id="timezone-lower-case"),
    pytest.param("timezone: Asia/Shanghai", "timezone: localtime", "window.timezone", "timezone:", id="timezone-localtime"),
    pytest.param("timezone: Asia/Shanghai", "timezone: Asia", "window.timezone", "timezone:", id="timezone-area-only"),
    pytest.param("timezone: Asia/Shanghai", "timezone: Asia/../etc/passwd", "window.timezone", "timezone:", id="timezone-path"),
    pytest.param("kind: airtime_topup", "kind: promotion_bonus", "trigger.kind", "  kind: ", id="trigger-internal-kind"),
    pytest.param("kind: airtime_topup", "kind: reversal", "trigger.kind", "  kind: ", id="trigger-reversal"),
    pytest.param("kind: airtime_topup", "kind: topup", "trigger.kind", "  kind: ", id="trigger-unknown-kind"),
    pytest.param('amount_min: "100.00"', "amount_min: 100.00", "trigger.amount_min", "amount_min:", id="amount-yaml-float"),
    pytest.param('amount_min: "100.00"', "amount_min: 100", "trigger.amount_min", "amount_min:", id="amount-yaml-int"),
    pytest.param('amount_min: "100.00"', 'amount_min: "100.001"', "trigger.amount_min", "amount_min:", id="amount-fraction-of-fen"),
    pytest.param('amount_min: "100.00"', 'amount_min: "1,000"', "trigger.amount_min", "amount_min:", id="amount-malformed"),
    pytest.param('amount_min: "100.00"', 'amount_min: "-5.00"', "trigger.amount_min", "amount_min:", id="amount-negative"),
    pytest.param('amount_min: "100.00"', 'amount_min: "0.00"', "trigger.amount_min", "amount_min:", id="amount-zero"),
    pytest.param('amount_min: "100.00"', 'amount_min: "100000000001.00"', "trigger.amount_min", "amount_min:", id="amount-too-large"),
    pytest.param('amount_min: "100.00"', f'amount_min: "{"1" * (AMOUNT_TEXT_LEN_MAX + 1)}"', "trigger.amount_min", "amount_min:",
                 id="amount-text-too-long"),
    pytest.param("[sms, ussd, stk, counter, pos]", "[sms, fax]", "trigger.channels[1]", "channels:", id="unknown-channel"),
    pytest.param("[sms, ussd, stk, counter, pos]", "[]", "trigger.channels", "channels:", id="no-channel"),
    pytest.param("[sms, ussd, stk, counter, pos]", "[sms, ussd, sms]", "trigger.channels", "channels:", id="channel-twice"),
    pytest.param("[sms, ussd, stk, counter, pos]", "sms", "trigger.channels", "channels:", id="channels-not-a-list"),
    pytest.param(
        "  channels: [sms, ussd, stk, counter, pos]", "  channels:\n    - sms\n    - on",
        "trigger.channels[1]", "- on", id="channel-yaml-boolean-on-its-own-line",
    ),
    pytest.param('amount: "30.00"', 'amount: "0.001"', "reward.amount", 'amount: "0.001"', id="reward-fraction-of-fen"),
    pytest.param("source_account: promo-expense", "source_account: ''", "reward.source_account", "source_account:", id="source-empty"),
    pytest.param("source_account: promo-expense", f"source_account: {'p' * (ACCOUNT_REF_LEN_MAX + 1)}", "reward.source_account",
                 "source_account:", id="source-too-long"),
    pytest.param("target_account_kind: customer_airtime", "target_account_kind: merchant", "reward.target_account_kind",
                 "target_account_kind:", id="target-not-a-customer-kind"),
    pytest.param("target_account_kind: customer_airtime", "target_account_kind: promotion_expense", "reward.target_account_kind",
                 "target_account_kind:", id="target-expense-kind"),
    pytest.param("target_account_kind: customer_airtime", "target_account_kind: wallet", "reward.target_account_kind",
                 "target_account_kind:", id="target-unknown-kind"),
    pytest.param('budget: "300000.00"', 'budget: "29.99"', "caps.budget", "budget:", id="budget-below-one-reward"),
    pytest.param('budget: "300000.00"', "budget: 300000", "caps.budget", "budget:", id="budget-yaml-int"),
    pytest.param("count: 1}", "count: 4}", "caps.per_period.count", "per_period:", id="period-count-above-campaign-cap"),
    pytest.param("count: 1}", "count: 0}", "caps.per_period.count", "per_period:", id="period-count-zero"),
    pytest.param("period: month", "period: year", "caps.per_period.period", "per_period:", id="period-unknown"),
    pytest.param("per_period: {period: month, count: 1}", "per_period: {period: month}", "caps.per_period.count", "per_period:",
                 id="period-count-missing"),
    pytest.param("per_campaign: 3 ", "per_campaign: 0 ", "caps.per_campaign", "per_campaign:", id="campaign-cap-zero"),
    pytest.param("per_campaign: 3 ", f"per_campaign: {GRANTS_PER_CUSTOMER_MAX + 1} ", "caps.per_campaign", "per_campaign:",
                 id="campaign-cap-too-large"),
    pytest.param("per_campaign: 3 ", "per_campaign: 3.0 ", "caps.per_campaign", "per_campaign:", id="campaign-cap-float"),
    pytest.param("per_campaign: 3 ", "per_campaign: true ", "caps.per_campaign", "per_campaign:", id="campaign-cap-boolean"),
    pytest.param("per_campaign: 3 ", 'per_campaign: "3" ', "caps.per_campaign", "per_campaign:", id="campaign-cap-text"),
    pytest.param('  amount: "30.00"            # 30 CNY of phone credit per grant\n', "", "reward.amount", "reward:",
                 id="reward-amount-missing"),
    pytest.param("  source_account: promo-expense", '  source_account: promo-expense\n  amount: "40.00"', "reward.amount",
                 'amount: "40.00"', id="duplicate-key"),
    pytest.param("  kind: airtime_topup", "  kind: airtime_topup\n  7: x", "trigger", "7: x", id="key-not-text"),
    pytest.param("per_period: {period: month, count: 1}", "per_period: monthly", "caps.per_period", "per_period:",
                 id="per-period-not-a-mapping"),
    pytest.param("  channels: [sms, ussd, stk, counter, pos]", "  channels:\n    - [sms]", "trigger.channels[0]", "- [sms]",
                 id="channel-a-list"),
]


@pytest.mark.parametrize(("old", "new", "field", "line_text"), INVALID)
def test_invalid_file_names_field_and_line(old: str, new: str, field: str, line_text: str) -> None:
    text = edited(old, new)
    error = refused(text)
    assert error.field == field
    assert error.message.startswith(f"{SOURCE}:{line_of(text, line_text)}: {field}: "), error.message
    assert str(error).startswith(f"campaign_invalid [{field}]: {SOURCE}:")


def test_invalid_values_are_translated_from_their_cause() -> None:
    error = refused(edited("[sms, ussd, stk, counter, pos]", "[sms, fax]"))
    assert type(error.__cause__).__name__ == "ValidationError"
    error = refused(edited('amount_min: "100.00"', 'amount_min: "100.001"'))
    assert isinstance(error.__cause__, RequestError)
    assert "fraction of a fen" in error.message
    error = refused(edited("timezone: Asia/Shanghai", "timezone: Mars/Olympus_Mons"))
    assert "unknown time zone" in error.message


def test_missing_top_level_field_has_no_line() -> None:
    error = refused(SEED_TEXT.replace("name: 满百送30\n", ""))
    assert error.field == "name"
    assert error.message == f"{SOURCE}: name: is required but missing"


def test_first_error_in_file_order_is_reported() -> None:
    text = edited("kind: airtime_topup", "kind: topup").replace('budget: "300000.00"', "budget: 1")
    assert refused(text).field == "trigger.kind"


# (text, text of the line the message must name, or None)
INVALID_DOCUMENTS = [
    pytest.param(SEED_TEXT.replace("kind: airtime_topup", "kind: airtime: topup"), "kind: airtime: topup", id="syntax-error"),
    pytest.param(SEED_TEXT.replace("reward:\n", "reward: &r\n"), "reward: &r", id="anchor"),
    pytest.param(SEED_TEXT + "copy: *r\n", "copy:", id="alias"),
    pytest.param(SEED_TEXT + "description: " + "[" * (CAMPAIGN_NESTING_DEPTH_MAX + 1) + "]" * (CAMPAIGN_NESTING_DEPTH_MAX + 1) + "\n",
                 "[[[", id="nested-too-deep"),
    pytest.param(SEED_TEXT + "---\nid: second\n", "---", id="two-documents"),
    pytest.param(SEED_TEXT.replace("id: manbai-song30-2026", 'id: !!python/object/apply:os.system ["true"]'), "id:", id="python-tag"),
    pytest.param("- id\n- name\n", None, id="not-a-mapping"),
    pytest.param("", None, id="empty"),
    pytest.param("# only a comment\n", None, id="only-a-comment"),
    pytest.param("id: a\x07b\n", None, id="control-character"),
    pytest.param("x" * (CAMPAIGN_FILE_BYTES_MAX + 1), None, id="too-big"),
    pytest.param("description: '" + "满" * (CAMPAIGN_FILE_BYTES_MAX // 3) + "'\n", None, id="too-big-in-utf8"),
]


@pytest.mark.parametrize(("text", "line_text"), INVALID_DOCUMENTS)
def test_invalid_document(text: str, line_text: str | None) -> None:
    error = refused(text)
    assert error.field is None
    if line_text is not None:
        assert error.message.startswith(f"{SOURCE}:{line_of(text, line_text)}: "), error.message
    else:
        assert error.message.startswith(f"{SOURCE}: ") or error.message.startswith(f"{SOURCE}:1: "), error.message


def test_syntax_error_names_where_the_construct_began() -> None:
    error = refused("trigger:\n  kind: [airtime_topup\n")
    assert error.message == f"{SOURCE}:3: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence on line 2)"


def test_only_the_campaign_loader_keeps_timestamps_as_text() -> None:
    load(SEED_TEXT)
    assert isinstance(yaml.safe_load("d: 2026-05-16")["d"], date)


# --- Direct construction checks the same invariants --------------------------------------


def test_direct_construction_is_checked() -> None:
    with pytest.raises(RequestError) as info:
        dataclasses.replace(SEED, end=date(2026, 5, 15))
    assert info.value.field == "window.end"
    with pytest.raises(RequestError) as info:
        Reward(3_000, "promo-expense", AccountKind.MERCHANT)
    assert info.value.field == "reward.target_account_kind"
    with pytest.raises(RequestError) as info:
        Trigger(TransferKind.REVERSAL, 100)
    assert info.value.field == "trigger.kind"
    with pytest.raises(RequestError) as info:
        Trigger(TransferKind.AIRTIME_TOPUP, 100, frozenset())
    assert info.value.field == "trigger.channels"
    with pytest.raises(RequestError) as info:
        Caps(PeriodCap(Period.DAY, 2), per_campaign=1)
    assert info.value.field == "caps.per_period.count"
    with pytest.raises(RequestError) as info:
        dataclasses.replace(SEED, caps=Caps(budget_fen=2_999))
    assert info.value.field == "caps.budget"
    with pytest.raises(RequestError) as info:
        dataclasses.replace(SEED, timezone="Nowhere/Land")
    assert info.value.field == "window.timezone"


def test_constructors_coerce_enum_values() -> None:
    trigger = Trigger("airtime_topup", 10_000, frozenset({"sms"}))  # type: ignore[arg-type]
    assert trigger.kind is TransferKind.AIRTIME_TOPUP
    assert trigger.channels == frozenset({Channel.SMS})
    assert PeriodCap("week", 1).period is Period.WEEK  # type: ignore[arg-type]


# --- Schema and code agree -----------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_schema_enums_match_the_model() -> None:
    props = SCHEMA["properties"]
    assert set(props["trigger"]["properties"]["kind"]["enum"]) == set(TRIGGER_KINDS)
    assert set(TRIGGER_KINDS) == set(TransferKind) - set(model._INTERNAL_KINDS)
    assert props["trigger"]["properties"]["channels"]["items"]["enum"] == [channel.value for channel in Channel]
    assert props["reward"]["properties"]["target_account_kind"]["enum"] == [kind.value for kind in AccountKind]
    assert props["caps"]["properties"]["per_period"]["properties"]["period"]["enum"] == [period.value for period in Period]
    assert {"customer_wallet", "customer_airtime", "points"} == set(CUSTOMER_ACCOUNT_KINDS)


def test_schema_limits_match_the_named_limits() -> None:
    props, defs = SCHEMA["properties"], SCHEMA["$defs"]
    assert props["id"]["pattern"] == r"^[a-z0-9][a-z0-9-]{2,47}$"
    assert CAMPAIGN_ID_LEN_MAX == 1 + 47
    assert defs["name"]["maxLength"] == CAMPAIGN_NAME_LEN_MAX
    assert props["description"]["maxLength"] == CAMPAIGN_DESCRIPTION_LEN_MAX
    assert props["window"]["properties"]["timezone"]["maxLength"] == TIMEZONE_LEN_MAX
    assert props["window"]["properties"]["timezone"]["default"] == rules.DEFAULT_TIMEZONE
    assert defs["count"]["maximum"] == GRANTS_PER_CUSTOMER_MAX
    assert defs["amount"]["maxLength"] == AMOUNT_TEXT_LEN_MAX
    assert props["reward"]["properties"]["source_account"]["maxLength"] == ACCOUNT_REF_LEN_MAX
    assert "366 days" in props["window"]["properties"]["end"]["description"]
    assert CAMPAIGN_DAYS_MAX == 366


def test_schema_describes_dates_and_amounts_as_strings() -> None:
    defs = SCHEMA["$defs"]
    assert defs["date"]["type"] == "string" and defs["date"]["format"] == "date"
    assert defs["amount"]["type"] == "string"


def _objects(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found.extend(_objects(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_objects(value))
    return found


def test_schema_allows_no_additional_properties_anywhere() -> None:
    objects = _objects(SCHEMA)
    assert len(objects) == 6  # the file, window, trigger, reward, caps, per_period
    assert all(obj.get("additionalProperties") is False for obj in objects)


# --- Time ------------------------------------------------------------------------------------


def test_timestamps_convert_exactly() -> None:
    moment = datetime(2026, 5, 15, 15, 59, 59, 999_999, tzinfo=UTC)
    ts = ts_us_from_datetime(moment)
    assert ts == 1_778_860_799_999_999
    assert datetime_from_ts_us(ts) == moment
    shanghai = moment.astimezone(SEED.zone)
    assert ts_us_from_datetime(shanghai) == ts
    assert us(1970, 1, 1) == TS_US_MIN


@pytest.mark.parametrize("bad", [TS_US_MIN - 1, TS_US_MAX + 1, True, 1.5])
def test_timestamps_out_of_range_are_refused(bad: Any) -> None:
    with pytest.raises(RequestError) as info:
        SEED.in_window(bad)
    assert info.value.reject_code is RejectCode.FIELD_INVALID
    assert info.value.field == "ts_us"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(RequestError) as info:
        ts_us_from_datetime(datetime(2026, 5, 16))
    assert info.value.field == "ts_us"


def test_extreme_timestamps_convert_without_overflow() -> None:
    for zone in ("Asia/Shanghai", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        rule = dataclasses.replace(SEED, timezone=zone)
        assert rule.period_key(TS_US_MIN) <= rule.period_key(TS_US_MAX)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        pytest.param(datetime(2026, 5, 15, 15, 59, 59, 999_999, tzinfo=UTC), False, id="before-first-local-midnight"),
        pytest.param(datetime(2026, 5, 15, 16, 0, 0, tzinfo=UTC), True, id="first-local-midnight"),
        pytest.param(datetime(2026, 5, 16, 0, 0, 0, tzinfo=UTC), True, id="first-utc-midnight"),
        pytest.param(datetime(2026, 7, 1, 4, 0, 0, tzinfo=UTC), True, id="middle"),
        pytest.param(datetime(2026, 8, 15, 15, 59, 59, 999_999, tzinfo=UTC), True, id="end-of-last-local-day"),
        pytest.param(datetime(2026, 8, 15, 16, 0, 0, tzinfo=UTC), False, id="after-last-local-day"),
    ],
)
def test_window_boundaries_are_local_midnights(moment: datetime, inside: bool) -> None:
    assert SEED.in_window(ts_us_from_datetime(moment)) is inside


def test_window_in_another_time_zone() -> None:
    rule = dataclasses.replace(SEED, timezone="UTC")
    assert not rule.in_window(us(2026, 5, 15, 23, 59, 59))
    assert rule.in_window(us(2026, 5, 16, 0, 0, 0))


def test_month_changes_at_local_midnight() -> None:
    assert SEED.period_key(us(2026, 5, 31, 15, 59, 59)) == "2026-05"
    assert SEED.period_key(us(2026, 5, 31, 16, 0, 0)) == "2026-06"


def test_week_and_day_keys() -> None:
    weekly = dataclasses.replace(SEED, caps=Caps(PeriodCap(Period.WEEK, 1)))
    daily = dataclasses.replace(SEED, caps=Caps(PeriodCap(Period.DAY, 1)))
    # 2026-05-16 is a Saturday of ISO week 20; Monday 2026-05-18 starts week 21 at 16:00Z on the 17th.
    assert weekly.period_key(us(2026, 5, 17, 15, 59, 59)) == "2026-W20"
    assert weekly.period_key(us(2026, 5, 17, 16, 0, 0)) == "2026-W21"
    assert daily.period_key(us(2026, 5, 15, 16, 0, 0)) == "2026-05-16"
    assert daily.period_key(us(2026, 5, 15, 15, 59, 59)) == "2026-05-15"


def test_iso_week_keys_cross_the_year_by_iso_rules() -> None:
    # 2026 begins on a Thursday, so it has 53 ISO weeks and 2027-01-03 still lies in 2026-W53.
    assert period_key_of(Period.WEEK, date(2026, 12, 31)) == "2026-W53"
    assert period_key_of(Period.WEEK, date(2027, 1, 3)) == "2026-W53"
    assert period_key_of(Period.WEEK, date(2027, 1, 4)) == "2027-W01"
    assert period_key_of(Period.MONTH, date(2027, 1, 3)) == "2027-01"
    assert period_key_of(Period.DAY, date(2027, 1, 3)) == "2027-01-03"


def test_without_a_period_cap_the_key_is_the_month() -> None:
    rule = dataclasses.replace(SEED, caps=Caps(per_campaign=3))
    assert rule.period_key(us(2026, 5, 31, 16, 0, 0)) == "2026-06"


# --- Qualifying --------------------------------------------------------------------------------

MIDDLE = us(2026, 6, 10, 4, 0, 0)


def test_qualifies() -> None:
    assert SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.USSD, MIDDLE)
    assert SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_001, Channel.POS, MIDDLE)
    assert not SEED.qualifies(TransferKind.AIRTIME_TOPUP, 9_999, Channel.USSD, MIDDLE)
    assert not SEED.qualifies(TransferKind.BILL_PAYMENT, 10_000, Channel.USSD, MIDDLE)
    assert not SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.WEB, MIDDLE)
    assert not SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.USSD, us(2026, 8, 15, 16, 0, 0))
    assert SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.USSD, us(2026, 5, 15, 16, 0, 0))


def test_any_channel_when_channels_are_absent() -> None:
    rule = dataclasses.replace(SEED, trigger=Trigger(TransferKind.AIRTIME_TOPUP, 10_000))
    assert all(rule.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, channel, MIDDLE) for channel in Channel)


def test_qualifies_refuses_a_non_integer_amount() -> None:
    with pytest.raises(RequestError):
        SEED.qualifies(TransferKind.AIRTIME_TOPUP, 100.0, Channel.USSD, MIDDLE)  # type: ignore[arg-type]


# --- Decisions at every cap boundary ------------------------------------------------------------

MAY_20 = us(2026, 5, 20, 2, 0, 0)
MAY_31_LAST = us(2026, 5, 31, 15, 59, 59)
JUNE_1_FIRST = us(2026, 5, 31, 16, 0, 0)
BUDGET = 30_000_000
REWARD = 3_000


def test_first_top_up_is_granted() -> None:
    assert SEED.decide(Usage(), 0, MAY_20) is Outcome.GRANTED


def test_period_cap_hit_within_the_month_but_granted_in_the_next() -> None:
    usage = Usage().after_grant(SEED.period_key(MAY_20))
    assert usage == Usage(1, "2026-05", 1)
    assert SEED.decide(usage, REWARD, MAY_31_LAST) is Outcome.REFUSED_PERIOD_CAP
    assert SEED.decide(usage, REWARD, JUNE_1_FIRST) is Outcome.GRANTED


def test_fourth_grant_is_refused_by_the_campaign_cap() -> None:
    usage = Usage()
    for month in (5, 6, 7):
        ts = us(2026, month, 20, 2, 0, 0)
        assert SEED.decide(usage, usage.total_count * REWARD, ts) is Outcome.GRANTED
        usage = usage.after_grant(SEED.period_key(ts))
    assert usage == Usage(3, "2026-07", 1)
    assert SEED.decide(usage, 3 * REWARD, us(2026, 8, 1, 2, 0, 0)) is Outcome.REFUSED_CAMPAIGN_CAP


def test_campaign_cap_is_checked_before_period_cap_before_budget() -> None:
    full = Usage(3, "2026-05", 1)
    assert SEED.decide(full, BUDGET, MAY_20) is Outcome.REFUSED_CAMPAIGN_CAP
    assert SEED.decide(Usage(1, "2026-05", 1), BUDGET, MAY_20) is Outcome.REFUSED_PERIOD_CAP
    assert SEED.decide(Usage(1, "2026-05", 1), BUDGET, JUNE_1_FIRST) is Outcome.REFUSED_BUDGET


def test_period_count_of_another_period_does_not_count() -> None:
    assert SEED.decide(Usage(2, "2026-06", 1), 0, MAY_20) is Outcome.GRANTED  # key differs: count is 0 for May


@pytest.mark.parametrize(
    ("used", "outcome"),
    [
        pytest.param(0, Outcome.GRANTED, id="untouched"),
        pytest.param(BUDGET - REWARD - 1, Outcome.GRANTED, id="one-fen-to-spare"),
        pytest.param(BUDGET - REWARD, Outcome.GRANTED, id="exactly-exhausted-by-this-grant"),
        pytest.param(BUDGET - REWARD + 1, Outcome.REFUSED_BUDGET, id="one-fen-short"),
        pytest.param(BUDGET, Outcome.REFUSED_BUDGET, id="spent"),
    ],
)
def test_budget_boundary(used: int, outcome: Outcome) -> None:
    assert SEED.decide(Usage(), used, MAY_20) is outcome


def test_without_caps_every_qualifying_top_up_is_granted() -> None:
    rule = dataclasses.replace(SEED, caps=Caps())
    assert rule.decide(Usage(GRANTS_PER_CUSTOMER_MAX * 10, "2026-05", 500), 10**15, MAY_20) is Outcome.GRANTED


def test_a_revoked_grant_frees_its_slot() -> None:
    usage = Usage().after_grant("2026-05")
    assert SEED.decide(usage, REWARD, MAY_31_LAST) is Outcome.REFUSED_PERIOD_CAP
    usage = usage.after_revoke("2026-05")
    assert usage == Usage(0, "2026-05", 0)
    assert SEED.decide(usage, 0, MAY_31_LAST) is Outcome.GRANTED


@pytest.mark.parametrize(
    ("usage", "used"),
    [
        pytest.param("usage", 0, id="usage-not-a-usage"),
        pytest.param(Usage(), -1, id="budget-used-negative"),
        pytest.param(Usage(), True, id="budget-used-boolean"),
    ],
)
def test_decide_refuses_bad_inputs(usage: Any, used: Any) -> None:
    with pytest.raises(RequestError) as info:
        SEED.decide(usage, used, MAY_20)
    assert info.value.reject_code is RejectCode.FIELD_INVALID


def test_outcomes_are_stable_strings() -> None:
    assert [outcome.value for outcome in Outcome] == [
        "granted", "refused_period_cap", "refused_campaign_cap", "refused_budget", "refused_unpayable"]


# --- Usage -------------------------------------------------------------------------------------------


def test_usage_after_grant() -> None:
    assert Usage().after_grant("2026-05") == Usage(1, "2026-05", 1)
    assert Usage(1, "2026-05", 1).after_grant("2026-05") == Usage(2, "2026-05", 2)
    assert Usage(2, "2026-05", 2).after_grant("2026-06") == Usage(3, "2026-06", 1)


def test_usage_after_revoke() -> None:
    assert Usage(3, "2026-06", 2).after_revoke("2026-06") == Usage(2, "2026-06", 1)
    assert Usage(3, "2026-06", 2).after_revoke("2026-05") == Usage(2, "2026-06", 2)
    assert Usage().after_revoke("2026-05") == Usage()
    assert Usage(0, "2026-05", 0).after_revoke("2026-05") == Usage(0, "2026-05", 0)
    assert Usage(1, "2026-06", 1).after_revoke("2026-05") == Usage(0, "2026-06", 0)  # inconsistent history: clamped


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param((-1, None, 0), "usage.total_count", id="negative-total"),
        pytest.param((1, "2026-05", -1), "usage.period_count", id="negative-period"),
        pytest.param((1, None, 1), "usage.period_count", id="count-without-key"),
        pytest.param((1, "2026-05", 2), "usage.period_count", id="period-above-total"),
        pytest.param((1, "", 1), "usage.period_key", id="empty-key"),
        pytest.param((1, "x" * 17, 1), "usage.period_key", id="long-key"),
        pytest.param((True, None, 0), "usage.total_count", id="boolean"),
    ],
)
def test_usage_invariants(args: tuple[Any, Any, Any], field: str) -> None:
    with pytest.raises(RequestError) as info:
        Usage(*args)
    assert info.value.field == field


def test_season_of_the_seed_campaign() -> None:
    """One customer tops up 100 CNY every ten days all summer: May, June, July earn 30 CNY each."""
    usage, spent, granted = Usage(), 0, []
    ts = us(2026, 5, 10, 0, 0, 0)
    while ts < us(2026, 8, 31, 0, 0, 0):
        if SEED.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.STK, ts):
            outcome = SEED.decide(usage, spent, ts)
            if outcome is Outcome.GRANTED:
                usage, spent = usage.after_grant(SEED.period_key(ts)), spent + REWARD
                granted.append(SEED.local_date(ts))
        ts += 10 * 86_400 * 1_000_000
    assert [day.month for day in granted] == [5, 6, 7]
    assert granted[0] == date(2026, 5, 20)
    assert spent == 9_000


# --- Properties -----------------------------------------------------------------------------------------

# Zones with and without summer time, with half-hour offsets and with offsets beyond ±12 h.
ZONES = ("Asia/Shanghai", "UTC", "America/New_York", "Europe/Berlin", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Kiritimati")

timestamps = st.integers(min_value=TS_US_MIN, max_value=TS_US_MAX)


@settings(max_examples=300, deadline=None)
@given(period=st.sampled_from(Period), zone=st.sampled_from(ZONES), a=timestamps, b=timestamps)
def test_period_key_is_monotonic_in_time(period: Period, zone: str, a: int, b: int) -> None:
    rule = dataclasses.replace(SEED, timezone=zone, caps=Caps(PeriodCap(period, 1)))
    early, late = sorted((a, b))
    assert rule.period_key(early) <= rule.period_key(late)


@settings(max_examples=300, deadline=None)
@given(period=st.sampled_from(Period), zone=st.sampled_from(ZONES), ts=st.integers(us(2020, 1, 1), us(2040, 1, 1)),
       step=st.integers(0, 40 * 86_400 * 1_000_000))
def test_period_key_is_monotonic_nearby(period: Period, zone: str, ts: int, step: int) -> None:
    rule = dataclasses.replace(SEED, timezone=zone, caps=Caps(PeriodCap(period, 1)))
    assert rule.period_key(ts) <= rule.period_key(ts + step)
    assert rule.period_key(ts) == period_key_of(period, datetime_from_ts_us(ts).astimezone(rule.zone).date())


@st.composite
def caps_strategy(draw: st.DrawFn) -> Caps:
    per_period = draw(st.none() | st.builds(PeriodCap, st.sampled_from(Period), st.integers(1, 3)))
    floor = per_period.count if per_period is not None else 1
    per_campaign = draw(st.none() | st.integers(floor, 6))
    budget = draw(st.none() | st.integers(REWARD, 12 * REWARD + 2_999))
    return Caps(per_period, per_campaign, budget)


@dataclasses.dataclass
class Grant:
    key: str


@settings(max_examples=300, deadline=None)
@given(
    caps=caps_strategy(),
    zone=st.sampled_from(("Asia/Shanghai", "UTC", "America/New_York")),
    steps=st.lists(
        st.tuples(st.integers(0, 9 * 86_400 * 1_000_000), st.booleans(), st.integers(0, 100)), min_size=1, max_size=60,
    ),
)
def test_decide_never_exceeds_a_cap(caps: Caps, zone: str, steps: list[tuple[int, bool, int]]) -> None:
    """Feed one customer's qualifying top-ups, and reversals of rewarded ones, and check every cap after each step.

    A reference model keeps the live grants; the usage must agree with it, and
    ``decide`` must grant exactly when no cap would be exceeded.
    """
    rule = dataclasses.replace(SEED, timezone=zone, caps=caps)
    usage, spent, live = Usage(), 0, list[Grant]()
    ts = ts_us_from_datetime(datetime.combine(rule.start, datetime.min.time(), rule.zone))
    for gap, revoke, pick in steps:
        ts += gap
        if not rule.qualifies(TransferKind.AIRTIME_TOPUP, 10_000, Channel.SMS, ts):
            break
        key = rule.period_key(ts)
        if revoke and live:
            grant = live.pop(pick % len(live))
            usage, spent = usage.after_revoke(grant.key), spent - REWARD
        else:
            in_period = sum(1 for grant in live if grant.key == key)
            expected = (
                (caps.per_campaign is None or len(live) < caps.per_campaign)
                and (caps.per_period is None or in_period < caps.per_period.count)
                and (caps.budget_fen is None or spent + REWARD <= caps.budget_fen)
            )
            outcome = rule.decide(usage, spent, ts)
            assert (outcome is Outcome.GRANTED) == expected
            if outcome is Outcome.GRANTED:
                usage, spent = usage.after_grant(key), spent + REWARD
                live.append(Grant(key))
        # The caps hold after every step.
        per_key = Counter(grant.key for grant in live)
        if caps.per_campaign is not None:
            assert len(live) <= caps.per_campaign
        if caps.per_period is not None:
            assert all(count <= caps.per_period.count for count in per_key.values())
        if caps.budget_fen is not None:
            assert 0 <= spent <= caps.budget_fen
        # The usage agrees with the reference model.
        assert usage.total_count == len(live)
        if usage.period_key is not None:
            assert usage.period_count == per_key[usage.period_key]


# Round trip over the whole domain of valid rules.

names = st.from_regex(r"\A[A-Za-z0-9满百送话费充值]([A-Za-z0-9 满百送话费充值,]{0,62}[A-Za-z0-9满百送话费充值])?\Z")
descriptions = st.text(st.characters(codec="utf-8"), min_size=1, max_size=CAMPAIGN_DESCRIPTION_LEN_MAX)


@st.composite
def rules_strategy(draw: st.DrawFn) -> CampaignRule:
    start = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
    reward = draw(st.integers(1, 10**9))
    return CampaignRule(
        id=draw(st.from_regex(r"\A[a-z0-9][a-z0-9-]{2,47}\Z")),
        name=draw(names),
        name_en=draw(st.none() | names),
        description=draw(st.none() | descriptions),
        start=start,
        end=start + timedelta(days=draw(st.integers(0, CAMPAIGN_DAYS_MAX - 1))),
        timezone=draw(st.sampled_from(ZONES)),
        trigger=Trigger(
            draw(st.sampled_from(sorted(TRIGGER_KINDS))),
            draw(st.integers(1, AMOUNT_FEN_MAX)),
            draw(st.none() | st.frozensets(st.sampled_from(Channel), min_size=1)),
        ),
        reward=Reward(
            reward,
            draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}\Z")),
            draw(st.sampled_from(sorted(CUSTOMER_ACCOUNT_KINDS))),
        ),
        caps=draw(caps_strategy().map(
            lambda caps: dataclasses.replace(caps, budget_fen=None if caps.budget_fen is None else max(caps.budget_fen, reward)),
        )),
    )


@settings(max_examples=200, deadline=None)
@given(rule=rules_strategy())
def test_round_trip_of_any_valid_rule(rule: CampaignRule) -> None:
    mapping = rule.to_mapping()
    Draft202012Validator(SCHEMA).validate(mapping)
    assert CampaignRule.from_mapping(mapping) == rule
    assert CampaignRule.from_json(rule.to_json()) == rule
    assert CampaignRule.from_mapping(json.loads(rule.to_json())).to_json() == rule.to_json()


@settings(max_examples=100, deadline=None)
@given(rule=rules_strategy().filter(lambda rule: rule.description is None or re.fullmatch(r"[\w ,.]*", rule.description)))
def test_yaml_round_trip_of_any_valid_rule(rule: CampaignRule) -> None:
    assert load(yaml.safe_dump(rule.to_mapping(), allow_unicode=True)) == rule


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_is_refused_only_with_campaign_invalid(text: str) -> None:
    try:
        CampaignRule.from_yaml(text, SOURCE)
    except RequestError as error:
        assert error.reject_code is RejectCode.CAMPAIGN_INVALID
        assert error.message.startswith(SOURCE)
