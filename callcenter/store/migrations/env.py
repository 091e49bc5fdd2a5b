"""
Alembic environment: always run on a connection callcenter hands over (see
callcenter.store.database), never from an alembic.ini of its own.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
