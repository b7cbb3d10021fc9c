"""The optional ClickHouse analytics store (``DOWNLINK_ANALYTICS_URL``).

SQLite or PostgreSQL stays the system of record (ingestion, jobs, editable tables);
when the setting is given, shipper consumers copy the committed event rows into
ClickHouse and the heavy reads are served from there. Nothing here names a source:
each source declares its tables (``Source.analytics_tables``) and its ClickHouse reads
(``Source.analytics_reads``); the core's own table is ``records``.

* :mod:`.client`: the connection from the setting (``clickhouse://``, ``clickhouses://``,
  or ``chdb://PATH`` for the in-process engine), shared by a process.
* :mod:`.schema`: versioned DDL applied on start (create, ``ADD COLUMN IF NOT EXISTS``,
  TTL from the retention settings, rebuilds by table swap).
* :mod:`.shipper`: one consumer per table, copying committed rows in large batches.
* :mod:`.records`: the core's ``records`` table and its reads (``/api/records``).
"""
