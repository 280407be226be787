//! Audit persistence: the `AuditStore` trait.
