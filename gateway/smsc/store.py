"""The SMSC's persistent message store: every accepted message until its deliver_sm is acknowledged (SQLite).

Theory of operation. One SQLite file (``smsc.sqlite3`` in the state directory)
in WAL mode holds one row per message the SMSC owes someone: its target, who
submitted it, the deliver_sm PDU to send (as encoded, sequence_number 0), the
receipt request, and its submission and expiry times (epoch seconds: they must
survive a restart). :meth:`MessageStore.add` commits before it returns, and
the server answers submit_sm_resp only after it, so an accepted message is on
disk. :meth:`MessageStore.remove` deletes it once delivered (or expired); what
is left when the process dies is loaded again by :meth:`MessageStore.load` and
delivered again, with the same message id.

Decisions:

* ``synchronous = NORMAL``: in WAL mode a commit survives the process being
  killed (the case the simulator is for); only a power cut may lose the last
  commits, which a simulator on a developer's machine can afford.
* Message ids are the row's AUTOINCREMENT number in hex, at least 8 digits:
  unique for the life of the file, never reused after a delete, and in the
  order of acceptance.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simwallet.gateway.smpp import DeliverSm, Pdu, SmppError, parse_pdu
from simwallet.gateway.smsc.errors import SmscStoreError
from simwallet.gateway.smsc.router import ESM_CLASS_DELIVERY_RECEIPT, Target, TargetKind

STORE_FILE_NAME = "smsc.sqlite3"
SCHEMA_VERSION = 1
# A busy file is waited for this long before the store gives up (another process holding it is a mistake).
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,
    registered_delivery INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    pdu BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS client_references (
    origin TEXT NOT NULL,
    reference TEXT NOT NULL,
    message_id TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    PRIMARY KEY (origin, reference)
)
"""


def format_message_id(number: int) -> str:
    return f"{number:08X}"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message the SMSC has accepted and not yet handed over."""

    message_id: str
    target: Target
    # The system_id of the account that submitted it (the SMSC's own for receipts).
    origin: str
    deliver: DeliverSm
    # §5.2.17 of the submit_sm (0 for receipts: no receipt for a receipt).
    registered_delivery: int
    submitted_at: float
    expires_at: float

    @property
    def is_receipt(self) -> bool:
        return self.deliver.esm_class & 0x3C == ESM_CLASS_DELIVERY_RECEIPT


class MessageStore:
    """The messages owed, in one SQLite file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STORE_FILE_NAME
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SmscStoreError(f"{self.path}: schema version {version}, this SMSC knows {SCHEMA_VERSION}", field="store")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise SmscStoreError(f"cannot open {self.path}: {exc}", field="store") from exc

    def add(
        self,
        target: Target,
        origin: str,
        build: Callable[[str], DeliverSm],
        *,
        registered_delivery: int,
        submitted_at: float,
        expires_at: float,
        client_reference: str | None = None,
    ) -> StoredMessage:
        """Allocate a message id, build its deliver_sm with ``build(message_id)``, and commit it (with its client reference)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO messages (target_kind, target, origin, registered_delivery, submitted_at, expires_at, pdu)"
                    " VALUES (?, ?, ?, ?, ?, ?, x'')",
                    (target.kind.value, target.name, origin, registered_delivery, submitted_at, expires_at),
                )
                number = cursor.lastrowid
                assert number is not None  # an INSERT into a rowid table always sets it
                message_id = format_message_id(number)
                deliver = build(message_id)
                self._db.execute("UPDATE messages SET pdu = ? WHERE rowid = ?", (Pdu(deliver, 0).to_bytes(), number))
                if client_reference is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO client_references (origin, reference, message_id, submitted_at) VALUES (?, ?, ?, ?)",
                        (origin, client_reference, message_id, submitted_at),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SmscStoreError(f"cannot store a message in {self.path}: {exc}", field="store") from exc
        return StoredMessage(message_id, target, origin, deliver, registered_delivery, submitted_at, expires_at)

    def by_client_reference(self, origin: str, reference: str) -> str | None:
        """The message id an account's earlier submit_sm with this client reference got, if it is remembered."""
        try:
            row = self._db.execute(
                "SELECT message_id FROM client_references WHERE origin = ? AND reference = ?", (origin, reference)
            ).fetchone()
        except sqlite3.Error as exc:
            raise SmscStoreError(f"cannot read {self.path}: {exc}", field="store") from exc
        return None if row is None else str(row[0])

    def forget_client_references(self, before: float) -> int:
        """Drop client references older than ``before`` (wall-clock seconds): duplicates are suppressed that long."""
        try:
            return self._db.execute("DELETE FROM client_references WHERE submitted_at < ?", (before,)).rowcount
        except sqlite3.Error as exc:
            raise SmscStoreError(f"cannot prune {self.path}: {exc}", field="store") from exc

    def remove(self, message_id: str) -> None:
        """Forget a message handed over (or given up)."""
        try:
            self._db.execute("DELETE FROM messages WHERE rowid = ?", (int(message_id, 16),))
        except sqlite3.Error as exc:
            raise SmscStoreError(f"cannot delete message {message_id} from {self.path}: {exc}", field="store") from exc

    def load(self) -> list[StoredMessage]:
        """Every message owed, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT rowid, target_kind, target, origin, registered_delivery, submitted_at, expires_at, pdu FROM messages ORDER BY rowid"
            ).fetchall()
        except sqlite3.Error as exc:
            raise SmscStoreError(f"cannot read {self.path}: {exc}", field="store") from exc
        messages = []
        for number, kind, name, origin, registered, submitted_at, expires_at, pdu in rows:
            try:
                body = parse_pdu(pdu).body
            except SmppError as exc:
                raise SmscStoreError(f"{self.path}: message {format_message_id(number)} does not parse: {exc}", field="store") from exc
            if not isinstance(body, DeliverSm):
                raise SmscStoreError(f"{self.path}: message {format_message_id(number)} is not a deliver_sm", field="store")
            target = Target(TargetKind(kind), name)
            messages.append(StoredMessage(format_message_id(number), target, origin, body, registered, submitted_at, expires_at))
        return messages

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def close(self) -> None:
        self._db.close()
