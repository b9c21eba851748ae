"""How sessions map onto journal lines: what a session is written as, and replaying them.

A session is journalled as its ``put`` record, followed, when it has a refresh token, by that
token's own line (a new one sealed, or the one already in the journal copied byte for byte);
the record's last field then says so. Replay attaches each token line to the put just
before it, and drops a put whose token line is missing (it could never be re-validated).
"""

from __future__ import annotations

from typing import Any

import structlog

from .journal import SessionJournal
from .lines import CopiedLine, Item, TokenLine
from .record import DELETE, PUT, TOUCH, Session

log = structlog.get_logger("agent.audit")

Pairs = list[tuple[Session | None, Item]]


def items_of(session: Session) -> Pairs:
    """What the journal holds for ``session``: its record, then its refresh token's line."""
    pairs: Pairs = [(None, [])]
    if session.new_refresh_token is not None:
        pairs.append((session, TokenLine(session.key, session.new_refresh_token)))
    elif session.token_at >= 0:
        pairs.append((session, CopiedLine(session.token_at)))
    pairs[0] = (None, session.row(token_follows=len(pairs) > 1))
    return pairs


def journal_items(session: Session) -> list[Item]:
    """The lines a new ``session`` is journalled as (``SessionJournal.append`` them)."""
    return [item for _, item in items_of(session)]


def settle(pairs: Pairs, offsets: list[int]) -> None:
    """Note where the journal now holds each session's refresh token."""
    for (session, item), at in zip(pairs, offsets, strict=True):
        if session is not None:
            session.token_at = at
            if isinstance(item, TokenLine) and session.new_refresh_token is item.token:
                session.new_refresh_token = None



def replay_sessions(journal: SessionJournal) -> dict[bytes, Session]:
    """The sessions the journal describes, in journal order (blocking)."""
    sessions: dict[bytes, Session] = {}
    from_row = Session.from_row
    awaiting: Session | None = None  # a put whose refresh token's line comes next
    for record in journal.replay():
        if isinstance(record, int):  # a refresh token's line: its put came just before
            if awaiting is not None:
                awaiting.token_at = record
                awaiting = None
            continue
        if awaiting is not None:  # its token line is missing: it cannot be re-validated
            _unusable(sessions, awaiting)
            awaiting = None
        op: Any = None
        row: list[Any]
        try:
            if isinstance(record, dict):  # an earlier version's record (fields by name)
                op = record.get("op")
                if op == "put":
                    s, follows = Session.from_record(record["session"])
                    op, row = PUT, []
                else:
                    row = [TOUCH, record["key"], record["last_seen"]] if op == "touch" else \
                        [DELETE, record["key"]] if op == "del" else [op]
                    op = row[0]
            else:
                row = record
                op = row[0]
                if op == PUT:
                    s, follows = from_row(row)
            if op == PUT:
                sessions[s.key] = s
                if follows:
                    awaiting = s
            elif op == TOUCH:
                t = sessions.get(bytes.fromhex(row[1]))
                if t is not None:
                    t.last_seen = t.persisted_seen = float(row[2])
            elif op == DELETE:
                sessions.pop(bytes.fromhex(row[1]), None)
        except (IndexError, KeyError, TypeError, ValueError, AttributeError):
            log.error("session_record_unusable", op=str(op)[:16])
    if awaiting is not None:
        _unusable(sessions, awaiting)
    return sessions


def _unusable(sessions: dict[bytes, Session], session: Session) -> None:
    if sessions.get(session.key) is session:
        del sessions[session.key]
    log.error("session_record_unusable", op="put", detail="its refresh token is missing")
