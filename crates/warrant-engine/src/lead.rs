//! Leading the background work only one server may do at a time on a database several
//! servers share: the periodic full governance sweep and Shared Signals push delivery.
//! A session lock on a connection of its own ([`warrant_store::ChangeStore::lead`]) says
//! who leads; the leader gives the lead up as soon as that connection stops answering,
//! and another server takes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warrant_store::Store;

/// How often the leader checks it still holds its lock, and others try to take it.
const LEAD_CHECK: Duration = Duration::from_secs(1);

/// Whether this server leads the background work only one server may do at a time on a
/// shared database: the periodic full governance sweep and Shared Signals push delivery.
/// A server alone on its database always leads.
#[derive(Debug)]
pub struct Lead {
    leading: AtomicBool,
}

impl Lead {
    pub(crate) fn new(leading: bool) -> Self {
        Lead { leading: AtomicBool::new(leading) }
    }

    /// Whether this server leads now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn set(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// On a shared database: takes the lead whenever no server holds it, and gives it up
    /// as soon as its lock's connection stops answering. Runs until aborted.
    pub(crate) async fn contend(self: Arc<Self>, store: Arc<dyn Store>) {
        if !store.shared() {
            return;
        }
        let mut quiet = false;
        loop {
            match store.lead().await {
                Ok(Some(lock)) => {
                    quiet = false;
                    self.set(true);
                    tracing::info!("this server leads the background work (governance sweeps, Shared Signals push)");
                    loop {
                        tokio::time::sleep(LEAD_CHECK).await;
                        if !lock.held().await {
                            break;
                        }
                    }
                    self.set(false);
                    tracing::warn!("this server lost the lead of the background work; another server may take it");
                }
                Ok(None) => quiet = false,
                Err(e) if !quiet => {
                    quiet = true;
                    tracing::warn!(error = %e, "cannot contend for the lead of the background work; retrying");
                }
                Err(_) => {}
            }
            tokio::time::sleep(LEAD_CHECK).await;
        }
    }
}
