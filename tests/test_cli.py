"""The ``simwallet`` command line, end to end through click's test runner on SQLite and PostgreSQL.

Every command is run as a user would type it (``--db URL …``) against a fresh,
migrated database; ``--json`` output is parsed and checked field by field, and
the exit codes are those documented in ``simwallet --help``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from simwallet.gateway.ledger.limits import LOCAL_TZ
from simwallet.gateway.store.engine import make_engine
from simwallet.provisioning.cli.root import cli

REPO = Path(__file__).resolve().parent.parent
SEED_CAMPAIGN = REPO / "cards" / "promotions" / "manbai-song30.yaml"

WALLET = "C1/wallet"
AIRTIME = "C1/airtime"
BANK = "bank-icbc"


def run(url: str, *args: str, code: int = 0) -> Result:
    """Run ``simwallet --db URL ARGS`` and check its exit code; unexpected exceptions fail the test."""
    result = CliRunner().invoke(cli, ["--db", url, *args], catch_exceptions=False)
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def run_json(url: str, *args: str, code: int = 0) -> Any:
    """Run with ``--json``: stdout must be exactly one JSON document."""
    return json.loads(run(url, "--json", *args, code=code).stdout)


def setup_customer(url: str, *, deposit: str | None = "500.00") -> None:
    """A bank settlement account, and customer C1's wallet and airtime accounts; optionally a deposit."""
    run(url, "ledger", "account", "open", "--kind", "bank_settlement", "--owner", "bank:ICBC", "--ref", BANK)
    run(url, "ledger", "account", "open", "--kind", "customer_wallet", "--owner", "customer:C1", "--ref", WALLET)
    run(url, "ledger", "account", "open", "--kind", "customer_airtime", "--owner", "customer:C1", "--ref", AIRTIME)
    if deposit is not None:
        transfer(url, BANK, WALLET, deposit, "deposit")


def transfer(url: str, debit: str, credit: str, amount: str, kind: str, *extra: str, code: int = 0) -> Any:
    return run_json(url, "ledger", "transfer", "--from", debit, "--to", credit, "--amount", amount, "--kind", kind, *extra,
                    code=code)


def balance_fen(url: str, ref: str, *extra: str) -> int:
    doc = run_json(url, "ledger", "balance", ref, *extra)
    return int(doc["account"]["balance_fen"])


# --- the root command -------------------------------------------------------------


def test_help_lists_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for line in ("0  success", "1  request refused", "2  usage", "3  a remote peer", "4  integrity violation", "5  database"):
        assert line in result.stdout


def test_config_file_unknown_key_is_named(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "simwallet.toml"
    config.write_text(f'db = "{sqlite_url}"\ntimezone = "UTC"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "ledger", "account", "list"])
    assert result.exit_code == 2
    assert "unknown key 'timezone'" in result.stderr
    assert "Traceback" not in result.output


def test_config_file_gives_db_and_json(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "simwallet.toml"
    config.write_text(f'db = "{sqlite_url}"\njson = true\n', encoding="utf-8")
    runner = CliRunner(env={"SIMWALLET_DB": None})
    result = runner.invoke(cli, ["--config", str(config), "ledger", "account", "list"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"accounts": [], "next_after_id": None}
    # The command line wins over the file.
    result = runner.invoke(cli, ["--config", str(config), "--no-json", "ledger", "account", "list"], catch_exceptions=False)
    assert result.exit_code == 0
    assert not result.stdout.lstrip().startswith("{")


def test_usage_error_under_json_is_a_json_document(sqlite_url: str) -> None:
    doc = run_json(sqlite_url, "ledger", "transfer", "--from", WALLET, code=2)
    assert doc["error"]["code"] == "usage"
    assert doc["error"]["exit_code"] == 2


def test_unreachable_database_exits_5_without_traceback_or_password() -> None:
    result = run("postgresql://clerk:s3cret@127.0.0.1:1/simwallet", "ledger", "account", "list", code=5)
    assert "s3cret" not in result.output
    assert "store_error" in result.stderr


# --- accounts and tiers --------------------------------------------------------------


def test_account_open_show_list(db_url: str) -> None:
    setup_customer(db_url, deposit=None)
    shown = run_json(db_url, "ledger", "account", "show", WALLET)["account"]
    assert shown["kind"] == "customer_wallet"
    assert shown["owner"] == "customer:C1"
    assert shown["flags"] == ["debits_must_not_exceed_credits"]
    assert (shown["balance_fen"], shown["balance"]) == (0, "0.00")
    assert run_json(db_url, "ledger", "account", "show", str(shown["id"]))["account"]["ref"] == WALLET
    human = run(db_url, "ledger", "account", "show", WALLET).stdout
    assert "customer_wallet" in human
    assert "0.00" in human

    listed = run_json(db_url, "ledger", "account", "list", "--owner", "customer:C1")
    assert [a["ref"] for a in listed["accounts"]] == [WALLET, AIRTIME]
    page = run_json(db_url, "ledger", "account", "list", "--limit", "1")
    assert len(page["accounts"]) == 1
    rest = run_json(db_url, "ledger", "account", "list", "--after-id", str(page["next_after_id"]))
    assert [a["ref"] for a in rest["accounts"]] == [WALLET, AIRTIME]
    assert [a["ref"] for a in run_json(db_url, "ledger", "account", "list", "--kind", "bank_settlement")["accounts"]] == [BANK]
    assert BANK in run(db_url, "ledger", "account", "list").stdout

    doc = run_json(db_url, "ledger", "account", "open", "--kind", "customer_wallet", "--owner", "customer:C1", "--ref", WALLET, code=1)
    assert doc["error"]["code"] == "account_exists"
    assert run_json(db_url, "ledger", "account", "show", "nobody", code=1)["error"]["code"] == "account_not_found"
    # Ids beyond the 64-bit columns are refused before they reach the database driver.
    assert run_json(db_url, "ledger", "account", "show", "9" * 30, code=1)["error"]["code"] == "account_not_found"
    assert run_json(db_url, "ledger", "reverse", "9" * 30, code=2)["error"]["field"] == "transfer_id"


def test_freeze_unfreeze_close(db_url: str) -> None:
    setup_customer(db_url)
    assert run_json(db_url, "ledger", "account", "freeze", WALLET)["account"]["status"] == "frozen"
    refused = transfer(db_url, WALLET, AIRTIME, "1.00", "airtime_topup", code=1)["error"]
    assert (refused["code"], refused["field"]) == ("account_frozen", "debit_account")
    run(db_url, "ledger", "account", "unfreeze", WALLET)
    transfer(db_url, WALLET, AIRTIME, "1.00", "airtime_topup")
    assert run_json(db_url, "ledger", "account", "close", WALLET, code=1)["error"]["field"] == "status"


def test_tier_set_list_and_limit(db_url: str) -> None:
    run(db_url, "ledger", "tier", "set", "cli-gold", "--per-txn", "100", "--per-day", "150.50", "--description", "CLI test")
    run(db_url, "ledger", "tier", "set", "cli-gold", "--per-day", "none")
    tiers = {t["name"]: t for t in run_json(db_url, "ledger", "tier", "list")["tiers"]}
    gold = tiers["cli-gold"]
    assert (gold["per_txn_max_fen"], gold["per_txn_max"]) == (10000, "100.00")
    assert gold["per_day_max_fen"] is None
    assert gold["description"] == "CLI test"
    run(db_url, "ledger", "account", "open", "--kind", "bank_settlement", "--owner", "bank:ICBC", "--ref", BANK)
    run(db_url, "ledger", "account", "open", "--kind", "customer_wallet", "--owner", "customer:C2", "--tier", "cli-gold")
    transfer(db_url, BANK, "customer:C2/customer_wallet", "500.00", "deposit")
    refused = transfer(db_url, "customer:C2/customer_wallet", BANK, "100.01", "withdrawal", code=1)["error"]
    assert (refused["code"], refused["field"]) == ("limit_exceeded", "limit.per_txn")


# --- transfers ---------------------------------------------------------------------


def test_transfer_json(db_url: str) -> None:
    setup_customer(db_url, deposit=None)
    doc = transfer(db_url, BANK, WALLET, "12.34", "deposit", "--idempotency-key", "dep-1", "--memo", "[bold]slip 7")
    assert doc["status"] == "posted"
    assert doc["duplicate"] is False
    assert doc["idempotency_key"] == "dep-1"
    t = doc["transfer"]
    assert (t["amount_fen"], t["amount"], t["currency"]) == (1234, "12.34", "CNY")
    assert (t["debit_account"], t["credit_account"]) == (BANK, WALLET)
    assert (t["kind"], t["phase"], t["channel"], t["memo"]) == ("deposit", "single", "counter", "[bold]slip 7")
    assert t["ts"].endswith("+08:00")
    assert doc["caused"] == []
    assert balance_fen(db_url, WALLET) == 1234


def test_generated_key_is_printed_before_posting(db_url: str) -> None:
    setup_customer(db_url, deposit=None)
    result = run(db_url, "ledger", "transfer", "--from", BANK, "--to", WALLET, "--amount", "5", "--kind", "deposit")
    key = result.stderr.split("idempotency key: ", 1)[1].split()[0]
    assert f"posted (idempotency key {key})" in result.stdout
    again = run(db_url, "ledger", "transfer", "--from", BANK, "--to", WALLET, "--amount", "5", "--kind", "deposit",
                "--idempotency-key", key)
    assert "already posted" in again.stdout
    assert balance_fen(db_url, WALLET) == 500


def test_duplicate_key(db_url: str) -> None:
    setup_customer(db_url)
    first = transfer(db_url, WALLET, AIRTIME, "10.00", "airtime_topup", "--idempotency-key", "k-1")
    human = run(db_url, "ledger", "transfer", "--from", WALLET, "--to", AIRTIME, "--amount", "10.00", "--kind", "airtime_topup",
                "--idempotency-key", "k-1")
    assert "already posted" in human.stdout
    again = transfer(db_url, WALLET, AIRTIME, "10.00", "airtime_topup", "--idempotency-key", "k-1")
    assert again["duplicate"] is True
    assert again["status"] == "already_posted"
    assert again["transfer"]["id"] == first["transfer"]["id"]

    conflict = transfer(db_url, WALLET, AIRTIME, "10.01", "airtime_topup", "--idempotency-key", "k-1", code=1)["error"]
    assert (conflict["code"], conflict["field"], conflict["exit_code"]) == ("idempotency_conflict", "idempotency_key", 1)
    assert conflict["idempotency_key"] == "k-1"
    result = run(db_url, "ledger", "transfer", "--from", WALLET, "--to", AIRTIME, "--amount", "10.01", "--kind", "airtime_topup",
                 "--idempotency-key", "k-1", code=1)
    assert "idempotency_conflict" in result.stderr
    assert balance_fen(db_url, WALLET) == 49000


def test_refused_transfer_names_the_debit_account(db_url: str) -> None:
    setup_customer(db_url, deposit="5.00")
    result = run(db_url, "ledger", "transfer", "--from", WALLET, "--to", AIRTIME, "--amount", "5.01", "--kind", "airtime_topup",
                 code=1)
    assert "debit_account" in result.stderr
    assert "exceeds_credits" in result.stderr
    assert result.stdout == ""
    error = transfer(db_url, WALLET, AIRTIME, "5.01", "airtime_topup", code=1)["error"]
    assert (error["code"], error["field"]) == ("exceeds_credits", "debit_account")
    assert balance_fen(db_url, WALLET) == 500


@pytest.mark.parametrize(("amount", "code"), [
    ("0", "amount_must_be_positive"),
    ("-1", "amount_must_be_positive"),
    ("1.234", "amount_not_whole_fen"),
    ("abc", "amount_malformed"),
])
def test_bad_amounts_are_refused_naming_the_field(sqlite_url: str, amount: str, code: str) -> None:
    setup_customer(sqlite_url, deposit=None)
    error = transfer(sqlite_url, BANK, WALLET, amount, "deposit", code=1)["error"]
    assert (error["code"], error["field"]) == (code, "amount")
    result = run(sqlite_url, "ledger", "transfer", "--from", BANK, "--to", WALLET, f"--amount={amount}", "--kind", "deposit", code=1)
    assert "amount" in result.stderr
    assert code in result.stderr
    assert run_json(sqlite_url, "ledger", "history", WALLET)["lines"] == []


def test_pending_post_and_void(db_url: str) -> None:
    setup_customer(db_url)
    hold = transfer(db_url, WALLET, AIRTIME, "100.00", "airtime_topup", "--pending", "--timeout", "600")["transfer"]
    assert hold["phase"] == "pending"
    assert hold["expires"] is not None
    account = run_json(db_url, "ledger", "balance", WALLET)["account"]
    assert (account["balance"], account["available"], account["debits_pending"]) == ("500.00", "400.00", "100.00")

    posted = run_json(db_url, "ledger", "post-pending", str(hold["id"]), "--idempotency-key", "post-1")["transfer"]
    assert (posted["phase"], posted["pending_id"], posted["amount"]) == ("post", hold["id"], "100.00")
    assert balance_fen(db_url, WALLET) == 40000

    hold2 = transfer(db_url, WALLET, AIRTIME, "50.00", "airtime_topup", "--pending", "--timeout", "600")["transfer"]
    voided = run_json(db_url, "ledger", "void", str(hold2["id"]))["transfer"]
    assert (voided["phase"], voided["pending_id"]) == ("void", hold2["id"])
    error = run_json(db_url, "ledger", "post-pending", str(hold2["id"]), code=1)["error"]
    assert (error["code"], error["field"]) == ("pending_already_voided", "pending_id")
    account = run_json(db_url, "ledger", "balance", WALLET)["account"]
    assert (account["balance"], account["available"], account["debits_pending"]) == ("400.00", "400.00", "0.00")
    # A pending transfer needs a timeout.
    assert transfer(db_url, WALLET, AIRTIME, "1.00", "airtime_topup", "--pending", code=1)["error"]["field"] == "timeout_s"


def test_expire_sweeps_due_holds(db_url: str) -> None:
    import time

    setup_customer(db_url)
    hold = transfer(db_url, WALLET, AIRTIME, "20.00", "airtime_topup", "--pending", "--timeout", "1")["transfer"]
    time.sleep(1.1)
    doc = run_json(db_url, "ledger", "expire")
    assert [(t["pending_id"], t["phase"]) for t in doc["expired"]] == [(hold["id"], "expire")]
    assert doc["failed"] == []
    assert run_json(db_url, "ledger", "expire")["expired"] == []
    assert run_json(db_url, "ledger", "balance", WALLET)["account"]["available"] == "500.00"


def test_reverse(db_url: str) -> None:
    setup_customer(db_url)
    t = transfer(db_url, WALLET, AIRTIME, "30.00", "airtime_topup")["transfer"]
    doc = run_json(db_url, "ledger", "reverse", str(t["id"]), "--memo", "clerk error")
    rev = doc["transfer"]
    assert (rev["kind"], rev["reverses_id"], rev["memo"]) == ("reversal", t["id"], "clerk error")
    assert (rev["debit_account"], rev["credit_account"], rev["amount"]) == (AIRTIME, WALLET, "30.00")
    assert balance_fen(db_url, WALLET) == 50000
    assert run_json(db_url, "ledger", "reverse", str(t["id"]), code=1)["error"]["code"] == "already_reversed"
    assert run_json(db_url, "ledger", "reverse", "999999", code=1)["error"]["code"] == "transfer_not_found"


# --- reading -------------------------------------------------------------------------


def test_balance_as_of(db_url: str) -> None:
    setup_customer(db_url, deposit=None)
    first = transfer(db_url, BANK, WALLET, "100.00", "deposit")["transfer"]
    transfer(db_url, BANK, WALLET, "23.45", "deposit")
    transfer(db_url, WALLET, AIRTIME, "3.45", "airtime_topup")
    assert balance_fen(db_url, WALLET) == 12000
    doc = run_json(db_url, "ledger", "balance", WALLET, "--as-of-transfer", str(first["id"]))
    assert doc["as_of"]["transfer_id"] == first["id"]
    assert (doc["account"]["balance"], doc["account"]["credits_posted"]) == ("100.00", "100.00")
    assert balance_fen(db_url, WALLET, "--as-of", "2000-01-01T00:00:00") == 0
    assert balance_fen(db_url, WALLET, "--as-of", first["ts"]) == 10000
    assert balance_fen(db_url, WALLET, "--as-of", datetime.now(LOCAL_TZ).isoformat()) == 12000
    human = run(db_url, "ledger", "balance", WALLET, "--as-of-transfer", str(first["id"])).stdout
    assert "100.00" in human
    assert "available" in human
    run(db_url, "ledger", "balance", WALLET, "--as-of-transfer", "1", "--as-of", "2000-01-01", code=2)
    assert run_json(db_url, "ledger", "balance", WALLET, "--as-of", "yesterday", code=1)["error"]["field"] == "as_of"


def test_history(db_url: str) -> None:
    setup_customer(db_url)
    transfer(db_url, WALLET, AIRTIME, "12.34", "airtime_topup")
    transfer(db_url, WALLET, AIRTIME, "0.66", "airtime_topup", "--pending", "--timeout", "600")
    doc = run_json(db_url, "ledger", "history", WALLET)
    lines = [(x["kind"], x["phase"], x["direction"], x["amount"], x["balance_after"]) for x in doc["lines"]]
    assert lines == [
        ("airtime_topup", "pending", "debit", "0.66", "487.66"),
        ("airtime_topup", "single", "debit", "12.34", "487.66"),
        ("deposit", "single", "credit", "500.00", "500.00"),
    ]
    page = run_json(db_url, "ledger", "history", WALLET, "--limit", "2")
    assert len(page["lines"]) == 2
    older = run_json(db_url, "ledger", "history", WALLET, "--before-id", str(page["next_before_id"]))
    assert [x["kind"] for x in older["lines"]] == ["deposit"]
    human = run(db_url, "ledger", "history", WALLET).stdout
    for text in ("balance after", "-12.34", "+500.00", "487.66", AIRTIME):
        assert text in human


def test_export_csv(db_url: str, tmp_path: Path) -> None:
    setup_customer(db_url)
    transfer(db_url, WALLET, AIRTIME, "12.34", "airtime_topup", "--memo", 'bill "7", line 2')
    hold = transfer(db_url, WALLET, AIRTIME, "0.99", "airtime_topup", "--pending", "--timeout", "600")["transfer"]
    run(db_url, "ledger", "post-pending", str(hold["id"]))
    out = tmp_path / "transfers.csv"
    summary = run_json(db_url, "ledger", "export", "--output", str(out))
    assert summary["rows"] == 4
    with out.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["id", "ts", "idempotency_key", "debit_account", "credit_account", "amount", "currency", "kind",
                             "channel", "phase", "pending_id", "reverses_id", "cause_id", "memo"]
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert rows[1]["memo"] == 'bill "7", line 2'
    assert rows[3]["pending_id"] == str(hold["id"])

    def fen(text: str) -> int:
        whole, frac = text.split(".")
        assert len(frac) == 2
        return int(whole) * 100 + int(frac)

    def posted_balance(ref: str) -> int:
        posted = [r for r in rows if r["phase"] in ("single", "post")]
        return sum(fen(r["amount"]) for r in posted if r["credit_account"] == ref) - \
            sum(fen(r["amount"]) for r in posted if r["debit_account"] == ref)

    assert posted_balance(WALLET) == balance_fen(db_url, WALLET) == 50000 - 1234 - 99
    assert posted_balance(AIRTIME) == balance_fen(db_url, AIRTIME) == 1234 + 99

    # Incremental export to stdout.
    result = run(db_url, "ledger", "export", "--since-id", rows[1]["id"])
    later = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in later] == [r["id"] for r in rows[2:]]


def test_verify_ok_then_tampered(db_url: str) -> None:
    setup_customer(db_url)
    transfer(db_url, WALLET, AIRTIME, "1.00", "airtime_topup")
    doc = run_json(db_url, "ledger", "verify")
    assert doc["ok"] is True
    assert {c["name"] for c in doc["checks"]} >= {"sums", "double_entry", "balances", "two_phase", "reversals", "campaigns"}
    assert "all checks passed" in run(db_url, "ledger", "verify").stdout

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE ref = :ref"), {"ref": WALLET})
    finally:
        engine.dispose()
    doc = run_json(db_url, "ledger", "verify", code=4)
    failed = {c["name"]: c for c in doc["checks"] if not c["ok"]}
    assert "sums" in failed
    assert any(WALLET in example for example in failed["sums"]["examples"])
    human = run(db_url, "ledger", "verify", code=4).stdout
    assert "FAIL" in human


# --- promotions ----------------------------------------------------------------------


def open_promo_source(url: str) -> None:
    run(url, "ledger", "account", "open", "--kind", "promotion_expense", "--owner", "operator", "--ref", "promo-expense")


def test_promo_create_from_the_seed_file(db_url: str) -> None:
    missing = run_json(db_url, "promo", "create", str(SEED_CAMPAIGN), code=1)["error"]
    assert (missing["code"], missing["field"]) == ("account_not_found", "reward.source_account")
    open_promo_source(db_url)
    created = run_json(db_url, "promo", "create", str(SEED_CAMPAIGN))["campaign"]
    assert created["id"] == "manbai-song30-2026"
    assert created["rule"]["reward"] == {"amount": "30.00", "source_account": "promo-expense", "target_account_kind": "customer_airtime"}
    assert run_json(db_url, "promo", "create", str(SEED_CAMPAIGN), code=1)["error"]["code"] == "campaign_exists"
    assert [c["id"] for c in run_json(db_url, "promo", "list")["campaigns"]] == ["manbai-song30-2026"]
    human = run(db_url, "promo", "show", "manbai-song30-2026").stdout
    assert "满百送30" in human
    assert "amount_min: '100.00'" in human
    # The CLI posts with the wall clock, outside the seed campaign's window (2026-05-16..08-15): no bonus.
    setup_customer(db_url)
    if not datetime(2026, 5, 16, tzinfo=LOCAL_TZ) <= datetime.now(LOCAL_TZ) < datetime(2026, 8, 16, tzinfo=LOCAL_TZ):
        assert transfer(db_url, WALLET, AIRTIME, "100.00", "airtime_topup")["caused"] == []
    assert run_json(db_url, "promo", "show", "nope", code=1)["error"]["code"] == "campaign_not_found"


def test_promo_invalid_file_names_line_and_field(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED_CAMPAIGN.read_text(encoding="utf-8").replace('amount_min: "100.00"', "amount_min: 100.5"), encoding="utf-8")
    line = next(n for n, text in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "amount_min" in text)
    result = run(sqlite_url, "promo", "create", str(bad), code=1)
    assert f"bad.yaml:{line}: trigger.amount_min:" in result.stderr
    error = run_json(sqlite_url, "promo", "create", str(bad), code=1)["error"]
    assert (error["code"], error["field"]) == ("campaign_invalid", "trigger.amount_min")


def _campaign_covering_today(tmp_path: Path) -> Path:
    today = datetime.now(LOCAL_TZ).date()
    text = SEED_CAMPAIGN.read_text(encoding="utf-8")
    text = text.replace("id: manbai-song30-2026", "id: manbai-cli-test")
    text = text.replace("start: 2026-05-16", f"start: {today - timedelta(days=1)}")
    text = text.replace("end: 2026-08-15", f"end: {today + timedelta(days=1)}")
    path = tmp_path / "manbai-now.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_promo_bonus_report_and_revocation(db_url: str, tmp_path: Path) -> None:
    open_promo_source(db_url)
    setup_customer(db_url)
    run(db_url, "promo", "create", str(_campaign_covering_today(tmp_path)))

    small = transfer(db_url, WALLET, AIRTIME, "99.99", "airtime_topup")
    assert small["caused"] == []
    topup = transfer(db_url, WALLET, AIRTIME, "100.00", "airtime_topup")
    [bonus] = topup["caused"]
    assert (bonus["kind"], bonus["amount"], bonus["cause_id"]) == ("promotion_bonus", "30.00", topup["transfer"]["id"])
    assert (bonus["debit_account"], bonus["credit_account"]) == ("promo-expense", AIRTIME)
    # Once per calendar month: the second top-up is refused by the period cap.
    assert transfer(db_url, WALLET, AIRTIME, "100.00", "airtime_topup")["caused"] == []

    [report] = run_json(db_url, "promo", "report")["campaigns"]
    assert report["id"] == "manbai-cli-test"
    assert (report["qualifying"], report["granted"], report["revoked"], report["customers_rewarded"]) == (2, 1, 0, 1)
    assert report["refused"] == {"period_cap": 1, "campaign_cap": 0, "budget": 0, "unpayable": 0}
    assert (report["budget_used_fen"], report["budget_used"]) == (3000, "30.00")
    assert (report["budget"], report["budget_left"]) == ("300000.00", "299970.00")
    assert "manbai-cli-test" in run(db_url, "promo", "report", "manbai-cli-test").stdout

    # Reversing the top-up takes the bonus back with it.
    reversal = run_json(db_url, "ledger", "reverse", str(topup["transfer"]["id"]))
    assert [t["reverses_id"] for t in reversal["caused"]] == [bonus["id"]]
    [report] = run_json(db_url, "promo", "report", "manbai-cli-test")["campaigns"]
    assert (report["revoked"], report["budget_used"]) == (1, "0.00")

    assert run_json(db_url, "promo", "stop", "manbai-cli-test")["campaign"]["status"] == "stopped"
    assert transfer(db_url, WALLET, AIRTIME, "100.00", "airtime_topup")["caused"] == []
    assert run_json(db_url, "promo", "start", "manbai-cli-test")["campaign"]["status"] == "active"
    assert run_json(db_url, "ledger", "verify")["ok"] is True


# --- the schema ----------------------------------------------------------------------


def test_db_current_and_upgrade(db_url: str) -> None:
    current = run_json(db_url, "db", "current")
    assert current["up_to_date"] is True
    assert current["current"] == current["head"]
    upgraded = run_json(db_url, "db", "upgrade")
    assert (upgraded["from"], upgraded["to"], upgraded["changed"]) == (current["head"], current["head"], False)


def test_postgresql_behind_head_asks_for_db_upgrade(request: pytest.FixtureRequest) -> None:
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database("cli_empty")
    try:
        result = run(url, "ledger", "account", "list", code=5)
        assert "simwallet db upgrade" in result.stderr
        assert run_json(url, "db", "current")["up_to_date"] is False
        upgraded = run(url, "db", "upgrade").stdout
        assert "upgraded from an empty database to" in upgraded
        assert run_json(url, "ledger", "account", "list")["accounts"] == []
    finally:
        cluster.drop_database("cli_empty")


def test_db_upgrade_of_an_empty_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert run_json(url, "db", "current")["current"] is None
    upgraded = run_json(url, "db", "upgrade")
    assert upgraded["from"] is None
    assert upgraded["to"] == upgraded["head"]
