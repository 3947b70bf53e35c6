"""The experiment database: engine and sessions, the schema (corpus and experiment tables), its
Alembic migrations, and the read-only views that `status`, `export`, reports and the dashboard use.

Imports only `orchestrator.config` and SQLAlchemy/Alembic; every other host package may import it.
"""
