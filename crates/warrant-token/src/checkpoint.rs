//! Signed checkpoints of the audit chain head.
