"""Statement pieces both databases share, written once for the ledger, the registry and the wallet service.

:func:`one_of` is ``column IN (values)``. SQLAlchemy renders an ``IN`` list
as one bound parameter per value, so a batch of 75 numbers and one of 76 are
two different statements: each is compiled again, sent with a new text, and
parsed and planned again by the server. On PostgreSQL the list travels as one
array parameter instead (``column = ANY(:values)``): one text for every batch
size, compiled once by SQLAlchemy, cached by psycopg and, after a few uses,
prepared, so the server plans it once per connection. SQLite keeps ``IN``
(it has no arrays; its statements are compiled in-process and cheap).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def one_of(dialect: sa.Dialect, column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """``column IN values``, as one array parameter on PostgreSQL."""
    if dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))
