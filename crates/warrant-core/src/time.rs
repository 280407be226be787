//! Time as plain data: seconds since the Unix epoch, passed in by the caller.

use serde::{Deserialize, Serialize};

/// A point in time, in whole seconds since the Unix epoch (UTC), as JWT `exp`/`iat` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The seconds since the epoch.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// This time plus `secs` seconds, saturating instead of overflowing.
    pub fn plus(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// Seconds from `self` until `later` (negative when `later` is earlier).
    pub fn until(self, later: UnixTime) -> i64 {
        later.0.saturating_sub(self.0)
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
