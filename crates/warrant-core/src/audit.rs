//! The audit chain, pure: records, canonical encoding and hash chaining, verification.
