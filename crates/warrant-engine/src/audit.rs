//! The audit writer: group commit of hash-chained records, checkpoints, verification.
