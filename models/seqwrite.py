"""One-statement writes that take a conversation's next seq (PostgreSQL).

The web's lone socket accept (`webapp/chat.py`, `_store_unread`) and the worker's plain reply
(`worker/replies.py`, `_store_reply_at_once`) each store a message and log its event in ONE
autocommitted statement: a CTE bumps the session's `last_seq` under its row lock (and checks
whatever the caller needs in its WHERE), then the event and the message are inserted FROM it.
Why one statement: on a shared two-core box each round trip to the database is a wait for the
server and a wake-up of the caller, which cost more than the server's own work (bench/README.md,
"Session 11: PostgreSQL acknowledgements" and "PostgreSQL's answer path").

The seq is only known inside the statement, yet the event's stored JSON must carry it and be,
byte for byte, the event that is published afterwards. So the event is serialised in Python
with a placeholder seq and split around it (`seq_pieces`); the statement glues the pieces back
together with the seq it took (`message_and_event`).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import CTE, Insert, Text, bindparam, cast, insert, select
from sqlalchemy.engine import Dialect

from models.chat import Message, SessionEvent

_M = Message.__table__
_E = SessionEvent.__table__

# The seq written into an event before the statement takes it: never a real seq, and `"seq":
# <it>` can only be one of the event's own two seq keys, the envelope's and the message's (a
# quote inside a string value is escaped, so no text anyone writes can contain the token).
SEQ_PLACEHOLDER = -7_340_033_119
_SEQ_KEY = '"seq": '
_SEQ_TOKEN = f"{_SEQ_KEY}{SEQ_PLACEHOLDER}"
_EVENT_COLUMNS = ("session_id", "type", "created_at")


def seq_pieces(dialect: Dialect, event: dict) -> dict[str, str] | None:
    """The event's JSON as the database would store it, split around its two placeholder seqs
    (`p0`, `p1`, `p2` for `message_and_event`); None when it does not hold exactly those two,
    and the caller must take its transactional way instead."""
    serialize = dialect._json_serializer or json.dumps  # type: ignore[attr-defined]
    pieces = serialize(event).split(_SEQ_TOKEN)
    if len(pieces) != 3:
        return None
    return {"p0": pieces[0] + _SEQ_KEY, "p1": pieces[1] + _SEQ_KEY, "p2": pieces[2]}


def with_defaults(values: dict) -> dict:
    """A message row with each unset column's Python-side default: an INSERT ... SELECT leaves
    out what it is not given, where a plain INSERT would have applied them."""
    for column in _M.c:
        default = column.default
        if column.name in values or default is None:
            continue
        if default.is_callable:
            values[column.name] = default.arg(None)  # type: ignore[attr-defined]
        elif default.is_scalar:
            values[column.name] = default.arg  # type: ignore[attr-defined]
    return values


def row_params(values: dict, logged: dict) -> dict[str, Any]:
    """The bound values `message_and_event` reads: the message's columns as `m_<name>` (not
    its seq, which the statement takes) and the logged event's as `e_<name>`."""
    params = {f"m_{name}": value for name, value in values.items() if name != "seq"}
    params.update({f"e_{name}": logged[name] for name in _EVENT_COLUMNS})
    return params


def typed(table: Any, prefix: str, name: str) -> Any:
    """One bound value cast to its column's type (an INSERT ... SELECT has no column to infer
    it from)."""
    column_type = table.c[name].type
    return cast(bindparam(prefix + name, type_=column_type), column_type)


def message_and_event(bumped: CTE, columns: tuple[str, ...], *before: CTE) -> Insert:
    """`[before...,] logged AS (INSERT INTO session_events SELECT ..., the JSON completed
    with the seq, FROM bumped) INSERT INTO messages SELECT ..., bumped.last_seq, ... FROM
    bumped RETURNING seq`: both rows get the seq `bumped` returned, and neither is written
    when it returned no row. `before` are the caller's other CTEs (e.g. closing the message
    a reply answers), placed ahead of the event's."""
    seq_text = cast(bumped.c.last_seq, Text)
    payload = (
        bindparam("p0", type_=Text)
        + seq_text
        + bindparam("p1", type_=Text)
        + seq_text
        + bindparam("p2", type_=Text)
    )
    logged = (
        insert(_E)
        .from_select(
            ["session_id", "seq", "type", "payload", "created_at"],
            select(
                typed(_E, "e_", "session_id"),
                bumped.c.last_seq,
                typed(_E, "e_", "type"),
                cast(payload, _E.c.payload.type),
                typed(_E, "e_", "created_at"),
            ).select_from(bumped),
            include_defaults=False,
        )
        .returning(_E.c.id)
        .cte("logged")
    )
    picked = [bumped.c.last_seq if name == "seq" else typed(_M, "m_", name) for name in columns]
    return (
        insert(_M)
        .from_select(list(columns), select(*picked).select_from(bumped), include_defaults=False)
        .add_cte(*before, logged)
        .returning(_M.c.seq)
    )
