"""The store's schema, version by version, and the step that brings a file up to date.

One entry per schema version; entry N (0-based) moves a file from version N to N + 1.
Append new migrations, never edit a released one.
"""

from __future__ import annotations

import sqlite3

from engine.errors import StoreError

#: One entry per schema version; entry N (0-based) moves a file from version N to N + 1.
#: Append new migrations, never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE webhooks (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            received_at REAL NOT NULL,
            headers TEXT NOT NULL,
            body BLOB NOT NULL,
            delivery_id TEXT,
            topic TEXT,
            state TEXT NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'processed', 'failed')),
            summary TEXT,
            error TEXT,
            processed_at REAL
        )""",
        # a plain UNIQUE would do too (SQLite lets NULLs repeat); partial says it plainly
        """CREATE UNIQUE INDEX webhooks_delivery ON webhooks (source, delivery_id)
            WHERE delivery_id IS NOT NULL""",
        "CREATE INDEX webhooks_state ON webhooks (state, id)",
        "CREATE INDEX webhooks_received ON webhooks (received_at)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            idx INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            api_version TEXT NOT NULL,
            body TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'invalid')),
            problems TEXT NOT NULL DEFAULT '[]',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            last_status INTEGER,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL,
            UNIQUE (webhook_id, rule, idx),
            CHECK (state = 'invalid' OR body IS NOT NULL)
        )""",
        "CREATE INDEX events_due ON events (state, next_attempt_at)",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
            started_at REAL NOT NULL,
            duration_ms REAL NOT NULL,
            status INTEGER,
            error TEXT,
            response TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retry', 'dead'))
        )""",
        "CREATE INDEX attempts_event ON attempts (event_id)",
    ),
    (
        # a webhook whose lookup failed waits for next_process_at, then is processed again
        "ALTER TABLE webhooks ADD COLUMN process_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE webhooks ADD COLUMN next_process_at REAL",
        # the v1/contact body to post before the event (JSON), NULL when none is declared
        "ALTER TABLE events ADD COLUMN contact TEXT",
        # contacts the CDP knows because we created them: "email:a@b.c", "sms:380…", "ext:42"
        """CREATE TABLE contacts (
            key TEXT PRIMARY KEY,
            contact_id INTEGER,
            created_at REAL NOT NULL
        )""",
    ),
    (
        # the server instance whose dispatcher claimed a pending event (engine.server.leases):
        # a restart releases at once what a server that died was sending
        "ALTER TABLE events ADD COLUMN leased_by TEXT",
    ),
    (
        # The raw body in a table of its own, written once. In the webhooks row, the
        # change of state after processing (received → processed) rewrote the whole
        # row, 16 KB body and all, since SQLite rewrites a row whose size changes.
        # Nothing is moved: rows stored before keep their body where it is (copying
        # every body would double a large file on upgrade, for rows whose state rarely
        # changes again); new rows store an empty blob there. Readers take the body
        # from webhook_bodies, else from webhooks.body (store_queries._WEBHOOKS).
        """CREATE TABLE webhook_bodies (
            webhook_id INTEGER PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
            body BLOB NOT NULL
        )""",
    ),
    (
        # Shops: one deployment serves many shops, each sending to its own CDP account.
        # "" is the shop of a server without a shops file (rows stored before this).
        "ALTER TABLE webhooks ADD COLUMN shop TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN shop TEXT NOT NULL DEFAULT ''",
        # a delivery id is the platform's, per shop: two shops may send the same one
        "DROP INDEX webhooks_delivery",
        """CREATE UNIQUE INDEX webhooks_delivery ON webhooks (source, shop, delivery_id)
            WHERE delivery_id IS NOT NULL""",
        "CREATE INDEX webhooks_shop ON webhooks (shop, id)",
        # the server instance processing a webhook now (its lease is next_process_at)
        "ALTER TABLE webhooks ADD COLUMN leased_by TEXT",
        # a contact known at one shop's CDP account is not known at another's
        """CREATE TABLE contacts_by_shop (
            shop TEXT NOT NULL,
            key TEXT NOT NULL,
            contact_id INTEGER,
            created_at REAL NOT NULL,
            PRIMARY KEY (shop, key)
        )""",
        "INSERT INTO contacts_by_shop SELECT '', key, contact_id, created_at FROM contacts",
        "DROP TABLE contacts",
        "ALTER TABLE contacts_by_shop RENAME TO contacts",
    ),
    (
        # changes: the fingerprint of the values last sent per shop and entity (a cart),
        # so an event whose values did not change is held back; forgotten at expires_at
        """CREATE TABLE changes (
            shop TEXT NOT NULL,
            entity TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (shop, entity)
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` in one transaction; return the version found.

    The version is read inside the write transaction, so two processes opening a new
    file at once cannot both create the tables.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {found}; this hookmap knows {SCHEMA_VERSION}"
            )
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        # PRAGMA takes no parameters; the value is our own int
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
