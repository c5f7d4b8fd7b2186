"""Alembic's environment for the store's revisions.

Run by :mod:`shetphone.store.migrate` (``flask --app app db upgrade``, or at
start), which hands over its own connection, already in the transaction that
holds the schema lock; Alembic neither connects nor commits.
"""

from alembic import context

from shetphone.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations through shetphone.store.migrate: flask --app app db upgrade")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it: revisions use op.batch_alter_table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
