//! One classification of every engine error, so the HTTP layer maps them all the same
//! way (one generic conversion) and never needs to know an operation's error enum.

/// What kind of failure an error is, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is malformed or not allowed; the message says how.
    Invalid,
    /// What was named does not exist.
    NotFound,
    /// The operation conflicts with the current state.
    Conflict,
    /// The caller may not do this.
    Forbidden,
    /// A dependency is unavailable for now; retrying later may succeed.
    Unavailable,
    /// The engine failed; the message is for logs, never for callers.
    Internal,
}

/// An engine error that says its [`ErrorKind`]. Its `Display` is safe to show to the
/// caller unless the kind is [`ErrorKind::Internal`].
pub trait Classify: std::error::Error {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
}
