"""Statement pieces both databases share, written once for the ledger, the registry and the wallet service.

:func:`one_of` is ``column IN (values)``. SQLAlchemy renders an ``IN`` list
as one bound parameter per value, so a batch of 75 numbers and one of 76 are
two different statements: each is compiled again, sent with a new text, and
parsed and planned again by the server. On PostgreSQL the list travels as one
array parameter instead (``column = ANY(:values)``): one text for every batch
size, compiled once by SQLAlchemy, cached by psycopg and, after a few uses,
prepared, so the server plans it once per connection. SQLite keeps ``IN``
(it has no arrays; its statements are compiled in-process and cheap).

:func:`insert_new` inserts a batch of rows, skipping those whose key exists
(``ON CONFLICT DO NOTHING``). psycopg runs an ``executemany`` as one
Execute per row (pipelined, but each row bound, sent and executed on its
own; SQLAlchemy's multi-row "insertmanyvalues" is not used for psycopg
without RETURNING). On PostgreSQL the rows travel as one array parameter
per column instead, unnested by the server (``INSERT … SELECT … FROM
unnest(:a, :b, …)``): one statement of one text for every batch size.
SQLite keeps ``executemany`` (in-process, no round trips to save).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def one_of(dialect: sa.Dialect, column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """``column IN values``, as one array parameter on PostgreSQL."""
    if dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def insert_new(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], *, key: str) -> None:
    """Insert ``rows`` (every row with the same columns) in one statement; a row whose ``key`` exists is skipped.

    No existence check beforehand is needed: the statement skips existing keys itself, without spending a
    value of the table's id sequence on them (PostgreSQL), and ``key`` must have a unique index.
    """
    if not rows:
        return
    names = tuple(rows[0])
    if conn.dialect.name == "postgresql":
        conn.execute(_unnest_insert(table, names, key), {f"p_{name}": [row[name] for row in rows] for name in names})
    else:
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]), list(rows))


@functools.lru_cache(maxsize=32)
def _unnest_insert(table: sa.Table, names: tuple[str, ...], key: str) -> sa.Insert:
    # One statement object per table and column set: SQLAlchemy compiles it once, psycopg prepares it.
    arrays = [sa.bindparam(f"p_{name}", type_=postgresql.ARRAY(table.c[name].type)) for name in names]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived()
    # Rows whose key exists are left out before they become tuples (a serial column's default would spend a
    # sequence value on each); ON CONFLICT still skips a key another transaction inserts meanwhile.
    exists = sa.select(sa.literal(1)).where(table.c[key] == rows.c[key]).exists()
    new = sa.select(*rows.c).where(~exists)
    return postgresql.insert(table).from_select(list(names), new).on_conflict_do_nothing(index_elements=[key])
