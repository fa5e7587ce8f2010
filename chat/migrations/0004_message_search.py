"""The GIN index of message search on PostgreSQL: ``to_tsvector('simple', body)``.

``chat.search.BodyVector`` renders exactly this expression, which is what lets PostgreSQL use
the index (docs/protocol.md, "Search"). Other databases get nothing: SQLite searches by
containment. Built ``CONCURRENTLY`` (so outside a transaction, ``atomic = False``): a plain
``CREATE INDEX`` would block every message send until the index of the whole table is built.
"""

from django.db import migrations

INDEX = "message_body_search_idx"
TABLE = "notifications_message"  # chat.Message's db_table


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # A build that failed half-way leaves an invalid index of this name: start afresh.
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} "
        "USING gin (to_tsvector('simple'::regconfig, body))"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("chat", "0003_feed_data"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index),
    ]
