//! The read connections of a database file: a read takes whichever connection is free,
//! and when none is, waits for the first to come free (not for one picked in advance, so
//! a long read, a governance sweep or an audit export, never holds up a short one that
//! another connection could serve).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StoreError;

/// A fixed set of read connections; one permit per connection not in use.
pub(crate) struct ReadPool {
    /// The connections not in use.
    free: Mutex<Vec<Connection>>,
    /// As many permits as `free` holds connections (taken before one is popped).
    permits: Arc<Semaphore>,
    /// Reads waiting for a connection now.
    waiting: AtomicUsize,
}

/// Counts a read as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReadPool {
    /// A pool of `conns`.
    pub(crate) fn new(conns: Vec<Connection>) -> Self {
        let permits = Arc::new(Semaphore::new(conns.len()));
        ReadPool { free: Mutex::new(conns), permits, waiting: AtomicUsize::new(0) }
    }

    /// How many connections are free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// How many reads are waiting for a connection now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits (without holding a thread) for a free connection and takes it; it goes back
    /// to the pool when the lease is dropped, also when the read using it panics.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease, StoreError> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.waiting);
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Backend("the read connections are closed".into()))?
            }
        };
        let conn = self
            .free
            .lock()
            .map_err(|_| StoreError::Backend("the read connection lock is poisoned".into()))?
            .pop()
            .ok_or_else(|| StoreError::Backend("no read connection is free".into()))?;
        Ok(Lease { pool: Arc::clone(self), conn: Some(conn), _permit: permit })
    }
}

/// One connection taken from a [`ReadPool`], returned to it on drop.
pub(crate) struct Lease {
    pool: Arc<ReadPool>,
    conn: Option<Connection>,
    /// Released after the connection is back (fields drop after `Drop::drop` ran).
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The leased connection.
    pub(crate) fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn.as_mut().ok_or_else(|| StoreError::Backend("the read connection was returned".into()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut free)) = (self.conn.take(), self.pool.free.lock()) {
            free.push(conn);
        }
    }
}
