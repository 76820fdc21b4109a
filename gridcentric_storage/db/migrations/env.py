from alembic import context

from gridcentric_storage.db import models

connection = context.config.attributes['connection']
context.configure(connection=connection, target_metadata=models.BASE.metadata,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
