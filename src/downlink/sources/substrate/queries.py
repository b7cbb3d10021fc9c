"""Questions about substrate nodes: who is connected, what they send, how they rate peers.

Every function takes a SQLAlchemy ``Connection`` first and returns plain dicts, so the
JSON API (``api/nodes.py``) and the web UI can share them. Times are epoch seconds.
Substrate records live in ``records`` with ``source = 'substrate'``, ``classification
= 'substrate/<msg>'``, ``machine_id`` = the node's peer id ('' until it is known),
``payload`` = the message body as JSON text and ``attrs`` = connection details.
Messages stored flagged (their peer id did not match its binding: docs/senders.md)
are left out of every answer here (``TRUSTED``).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Select, and_, func, or_, select, text

from downlink.sources.substrate.tables import benchmarks, node_connections
from downlink.store.queries.search import GROUPS_SHOWN, escape_like
from downlink.store.queries.shape import rows_first
from downlink.store.tables import records

Row = dict[str, Any]

SOURCE = "substrate"
PREFIX = "substrate/"
NETWORK_STATE = PREFIX + "system.network_state"
# Not flagged: the message's peer id matched its binding (or binding is off).
TRUSTED = records.c.sender_flagged.is_not(True)


def _msg(classification: str) -> str:
    return classification[len(PREFIX) :] if classification.startswith(PREFIX) else classification


def _body(payload: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _newest_of_each_peer() -> Select[tuple[int]]:
    """The id of each peer id's newest connection: the latest ``connected_at`` (then
    the highest id). Not the highest id alone: the consumer inserts the connections of
    one batch in key order, so a batch holding two connections of a peer may give the
    older one the higher id. Two groupings, not a window function (at 100,000
    connections on SQLite 178 ms against 276), both read from the index on (peer_id,
    connected_at) alone (migration substrate_0002: 101 ms against 208 with the index
    on peer_id, measured side by side; 20,000 peers)."""
    nc = node_connections.c
    last = (
        select(nc.peer_id, func.max(nc.connected_at).label("at"))
        .where(nc.peer_id.is_not(None))
        .group_by(nc.peer_id)
        .subquery()
    )
    return (
        select(func.max(nc.id))
        .join(last, and_(nc.peer_id == last.c.peer_id, nc.connected_at == last.c.at))
        .group_by(nc.peer_id)
    )


def list_nodes(conn: Connection, now: float, stale_after: float) -> list[Row]:
    """Return the newest connection of every known peer id, and each unidentified one.

    Unlike the reference, connections that have not announced a peer id are listed one
    by one (only those not yet closed) instead of being folded into one null entry.
    ``online`` is true for a connection that is not closed and sent something within
    ``stale_after`` seconds (a server killed without closing its sockets leaves rows
    that are not closed; they turn offline by age). Newest first.
    """
    nc = node_connections.c
    latest = _newest_of_each_peer()
    stmt = (
        select(node_connections)
        .where(
            or_(
                nc.id.in_(latest),
                and_(nc.peer_id.is_(None), nc.disconnected_at.is_(None)),
            )
        )
        .order_by(nc.id.desc())
    )
    out = []
    for row in conn.execute(stmt).mappings():
        item = dict(row)
        item["online"] = item["disconnected_at"] is None and item["last_seen"] >= now - stale_after
        out.append(item)
    return out


def list_connections(conn: Connection, now: float, stale_after: float) -> list[Row]:
    """Return every online connection, and the newest one of each peer id not online.

    For the nodes page: two connections announcing the same peer id (a node behind
    two links, or two nodes sharing a key) are two rows while both are online, where
    :func:`list_nodes` (the reference API's answer) keeps one row per peer id.
    Connections that have not announced a peer id are listed while not closed, and
    ``online`` is as in :func:`list_nodes`. Newest first.
    """
    nc = node_connections.c
    latest = _newest_of_each_peer()
    stmt = (
        select(node_connections)
        .where(
            or_(
                nc.id.in_(latest),
                and_(nc.disconnected_at.is_(None), nc.last_seen >= now - stale_after),
                and_(nc.peer_id.is_(None), nc.disconnected_at.is_(None)),
            )
        )
        .order_by(nc.id.desc())
    )
    rows = []
    for row in conn.execute(stmt).mappings():
        item = dict(row)
        item["online"] = item["disconnected_at"] is None and item["last_seen"] >= now - stale_after
        rows.append(item)
    online_peers = {r["peer_id"] for r in rows if r["online"] and r["peer_id"] is not None}
    # A peer's newest connection is shown offline only when none of its connections is online.
    return [
        r for r in rows if r["online"] or r["peer_id"] is None or r["peer_id"] not in online_peers
    ]


def known_peer_ids(conn: Connection) -> set[str]:
    """Return every peer id that has sent telemetry here."""
    stmt = select(node_connections.c.peer_id).where(node_connections.c.peer_id.is_not(None))
    return {str(p) for p in conn.execute(stmt.distinct()).scalars()}


def log_stats(conn: Connection, peer_id: str) -> list[Row]:
    """Count the retained messages of ``peer_id`` by type: ``[{qty, log_type}]``."""
    c = records.c
    stmt = (
        select(c.classification, func.count().label("qty"))
        .where(c.source == SOURCE, c.machine_id == peer_id, TRUSTED)
        .group_by(c.classification)
        .order_by(func.count().desc(), c.classification)
    )
    return [{"qty": int(qty), "log_type": _msg(cls)} for cls, qty in conn.execute(stmt)]


def node_logs(
    conn: Connection,
    peer_id: str,
    *,
    msg: str | None = None,
    target: str | None = None,
    start: float | None = None,
    end: float | None = None,
    limit: int = 10000,
) -> list[Row]:
    """Return the messages of ``peer_id``, newest node time first.

    ``start``/``end`` bound the node's timestamp (``start <= ts < end``). ``target``
    filters on the message's ``target`` field with or without ``msg`` (the reference
    ignored it unless ``msg`` was given). Each item: ``peer_id, msg, created_at`` (node
    time), ``received_at`` (server time), ``ip_addr``, ``connection``, ``node`` and
    ``logs`` (the message body).
    """
    c = records.c
    stmt = select(c.classification, c.ts_capture, c.ts_reception, c.payload, c.attrs).where(
        c.source == SOURCE, c.machine_id == peer_id, TRUSTED
    )
    if msg is not None:
        stmt = stmt.where(c.classification == PREFIX + msg)
    if target is not None:
        stmt = stmt.where(c.attrs["target"].as_string() == target)
    if start is not None:
        stmt = stmt.where(c.ts_capture >= start)
    if end is not None:
        stmt = stmt.where(c.ts_capture < end)
    stmt = stmt.order_by(c.ts_capture.desc(), c.id.desc()).limit(limit)
    out = []
    for cls, ts, received, payload, attrs in conn.execute(stmt):
        attrs = attrs or {}
        out.append(
            {
                "peer_id": peer_id,
                "msg": _msg(cls),
                "created_at": ts,
                "received_at": received,
                "ip_addr": attrs.get("ip"),
                "connection": attrs.get("conn"),
                "node": attrs.get("node"),
                "logs": _body(payload),
            }
        )
    return out


def recent_message_types(conn: Connection, since: float, limit: int = 1000) -> list[Row]:
    """Count each node's message types received since ``since``.

    Returns ``[{peer_id, msg, count, last_received}]``, most recent first; ``peer_id``
    is '' for messages of nodes not yet identified. Meant for the nodes page.
    """
    c = records.c
    # The rows first, through the (source, ts_reception) index, grouped afterwards:
    # grouped in one SELECT, SQLite walked all of ``records`` in machine_id order when
    # its statistics said every record was Clear Linux (docs/architecture.md, "Queries
    # on a table of skewed sources").
    recent = rows_first(
        select(c.machine_id, c.classification, c.ts_reception).where(
            c.source == SOURCE, c.ts_reception >= since, TRUSTED
        ),
        "recent",
    )
    last = func.max(recent.c.ts_reception)
    stmt = (
        select(recent.c.machine_id, recent.c.classification, func.count(), last)
        .group_by(recent.c.machine_id, recent.c.classification)
        .order_by(last.desc())
        .limit(limit)
    )
    return [
        {"peer_id": peer, "msg": _msg(cls), "count": int(n), "last_received": float(t)}
        for peer, cls, n, t in conn.execute(stmt)
    ]


def _peerset(body: dict[str, Any]) -> dict[str, Any]:
    state = body.get("state")
    if not isinstance(state, dict):
        return {}
    peerset = state.get("peerset")
    nodes = peerset.get("nodes") if isinstance(peerset, dict) else None
    return nodes if isinstance(nodes, dict) else {}


def _entry(value: Any) -> tuple[Any, Any]:
    if isinstance(value, dict):
        return value.get("reputation"), value.get("connected")
    return None, None


def latest_reputations(
    conn: Connection, since: float, limit: int, only: set[str] | None = None
) -> list[Row]:
    """Return each reporting peer's latest peerset received after ``since``.

    One item per reporting peer (at most ``limit``): ``reporting_peer``,
    ``remote_peer[]``, ``reputation[]``, ``connected[]`` (parallel arrays) and ``ts`` (node
    time of the snapshot). With ``only``, remote peers are restricted to that set.
    """
    c = records.c
    # Rows first (the (classification, ts_reception) index), grouped afterwards: see
    # recent_message_types.
    states = rows_first(
        select(c.id, c.machine_id).where(
            c.source == SOURCE,
            c.classification == NETWORK_STATE,
            c.machine_id != "",
            c.ts_reception > since,
            TRUSTED,
        ),
        "states",
    )
    newest = select(func.max(states.c.id)).group_by(states.c.machine_id)
    stmt = (
        select(c.machine_id, c.ts_capture, c.payload)
        .where(c.id.in_(newest.scalar_subquery()))
        .order_by(c.machine_id)
        .limit(limit)
    )
    out = []
    for peer, ts, payload in conn.execute(stmt):
        remote, reputation, connected = [], [], []
        for other, value in sorted(_peerset(_body(payload)).items()):
            if only is not None and other not in only:
                continue
            rep, con = _entry(value)
            remote.append(other)
            reputation.append(rep)
            connected.append(con)
        out.append(
            {
                "reporting_peer": peer,
                "remote_peer": remote,
                "reputation": reputation,
                "connected": connected,
                "ts": ts,
            }
        )
    return out


def peer_reputation(
    conn: Connection, peer_id: str, start: float | None, end: float | None, limit: int
) -> list[Row]:
    """Return how other nodes rated ``peer_id`` over time, newest first.

    Items: ``reporting_peer``, ``reputation``, ``connected``, ``ts``. The value is the one
    the snapshot holds for ``peer_id`` itself (the reference returned an arbitrary
    peer's value from the same snapshot).
    """
    c = records.c
    stmt = select(c.machine_id, c.ts_capture, c.payload).where(
        c.source == SOURCE,
        c.classification == NETWORK_STATE,
        c.payload.contains(f'"{peer_id}"', autoescape=True),
        TRUSTED,
    )
    if start is not None:
        stmt = stmt.where(c.ts_capture >= start)
    if end is not None:
        stmt = stmt.where(c.ts_capture < end)
    stmt = stmt.order_by(c.ts_capture.desc(), c.id.desc())
    out: list[Row] = []
    for reporter, ts, payload in conn.execution_options(yield_per=200).execute(stmt):
        nodes = _peerset(_body(payload))
        if peer_id not in nodes:
            continue
        rep, con = _entry(nodes[peer_id])
        out.append({"reporting_peer": reporter, "reputation": rep, "connected": con, "ts": ts})
        if len(out) >= limit:
            break
    return out


def relation_sizes(conn: Connection, limit: int = 1000) -> list[Row]:
    """Return the size of every table and index, largest first: ``[{relation, bytes}]``."""
    rows: list[tuple[Any, Any]]
    if conn.dialect.name == "sqlite":
        try:
            rows = [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name "
                        "ORDER BY 2 DESC, 1 LIMIT :n"
                    ),
                    {"n": limit},
                )
            ]
        except Exception:  # noqa: BLE001 - SQLite built without the dbstat table
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            size = conn.execute(text("PRAGMA page_size")).scalar_one()
            rows = [("(database)", int(pages) * int(size))]
    else:
        rows = [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT n.nspname || '.' || c.relname, pg_relation_size(c.oid) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND c.relkind IN ('r', 'i', 't', 'S', 'm', 'p') "
                    "ORDER BY 2 DESC, 1 LIMIT :n"
                ),
                {"n": limit},
            )
        ]
    return [{"relation": str(name), "bytes": int(size)} for name, size in rows]


def list_benchmarks(conn: Connection, limit: int) -> list[Row]:
    """Return benchmarks, newest first: ``[{id, setup, created_at}]``."""
    stmt = select(benchmarks).order_by(benchmarks.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def add_benchmark(conn: Connection, setup: Any, created_at: float) -> Row:
    """Store one benchmark description and return it with its ``id``."""
    new_id = conn.execute(
        benchmarks.insert().values(setup=setup, created_at=created_at).returning(benchmarks.c.id)
    ).scalar_one()
    return {"id": int(new_id), "setup": setup, "created_at": created_at}


def search_peers(conn: Connection, text: str) -> dict[str, Any]:
    """``peers``: substrate peer ids containing ``text`` (the search box), most recently
    seen first, from the node connections (never ``records``)."""
    like = "%" + escape_like(text) + "%"
    nc = node_connections.c
    peers = conn.execute(
        select(nc.peer_id, func.max(nc.last_seen))
        .where(nc.peer_id.like(like, escape="\\"))
        .group_by(nc.peer_id)
        .order_by(func.max(nc.last_seen).desc())
        .limit(GROUPS_SHOWN)
    )
    return {"peers": [{"peer_id": p, "last_seen": float(t)} for p, t in peers]}
