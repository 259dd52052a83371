"""Alembic environment of the job store, shipped inside the package (see ``JobStore.migrate``)."""
