"""PostgreSQL access: the embedded server, the engine/session factory, the catalog table and migrations."""
