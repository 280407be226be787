//! `AuditStore` for SQLite.
