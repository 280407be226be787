//! The registry held in memory, so the decision path never reads the database.
//!
//! Loaded from the store at start; every registry change goes to the store first and
//! then here (the engine is the only writer of the registry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use warrant_core::{Agent, AgentId, Human, HumanId};
use warrant_store::{Store, StoreError};

/// Humans and agents by id, and humans by email.
#[derive(Debug, Default)]
pub struct Directory {
    agents: RwLock<HashMap<AgentId, Arc<Agent>>>,
    humans: RwLock<HashMap<HumanId, Arc<Human>>>,
    /// Human ids by email (stored lower-case and unique).
    emails: RwLock<HashMap<String, HumanId>>,
    /// Human ids by external id (unique).
    external: RwLock<HashMap<String, HumanId>>,
    /// Counts this server's own writes (each after its store write committed), so that a
    /// state the change feed read before one of them never replaces it.
    writes: AtomicU64,
}

impl Directory {
    /// Loads every human and agent.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let humans: HashMap<HumanId, Arc<Human>> =
            store.list_humans().await?.into_iter().map(|h| (h.id.clone(), Arc::new(h))).collect();
        let emails = humans.values().map(|h| (h.email.clone(), h.id.clone())).collect();
        let external = humans.values().filter_map(|h| Some((h.external_id.clone()?, h.id.clone()))).collect();
        let agents = store.list_agents(None).await?.into_iter().map(|a| (a.id.clone(), Arc::new(a))).collect();
        Ok(Directory {
            agents: RwLock::new(agents),
            humans: RwLock::new(humans),
            emails: RwLock::new(emails),
            external: RwLock::new(external),
            writes: AtomicU64::new(0),
        })
    }

    /// Reads every human and agent from the store again and records each (for a server
    /// that missed changes another server made; nothing is ever removed).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let fresh = Directory::load(store).await?;
        for human in fresh.humans.into_inner().unwrap_or_default().into_values() {
            self.put_human(Arc::unwrap_or_clone(human));
        }
        for agent in fresh.agents.into_inner().unwrap_or_default().into_values() {
            self.put_agent(Arc::unwrap_or_clone(agent));
        }
        Ok(())
    }

    /// One agent, as last written.
    pub fn agent(&self, id: &AgentId) -> Option<Arc<Agent>> {
        self.agents.read().ok().and_then(|m| m.get(id).cloned())
    }

    /// One human, as last written.
    pub fn human(&self, id: &HumanId) -> Option<Arc<Human>> {
        self.humans.read().ok().and_then(|m| m.get(id).cloned())
    }

    /// One human by email (compared without case, as emails are stored lower-case).
    pub fn human_by_email(&self, email: &str) -> Option<Arc<Human>> {
        let id = self.emails.read().ok().and_then(|m| m.get(&email.to_ascii_lowercase()).cloned())?;
        self.human(&id)
    }

    /// One human by external id.
    pub fn human_by_external_id(&self, external_id: &str) -> Option<Arc<Human>> {
        let id = self.external.read().ok().and_then(|m| m.get(external_id).cloned())?;
        self.human(&id)
    }

    /// Records an agent's current state (written to the store just before).
    pub fn put_agent(&self, agent: Agent) {
        if let Ok(mut m) = self.agents.write() {
            self.writes.fetch_add(1, Ordering::SeqCst);
            m.insert(agent.id.clone(), Arc::new(agent));
        }
    }

    /// Records a human's current state (written to the store just before).
    pub fn put_human(&self, human: Human) {
        self.index_human(&human);
        if let Ok(mut m) = self.humans.write() {
            self.writes.fetch_add(1, Ordering::SeqCst);
            m.insert(human.id.clone(), Arc::new(human));
        }
    }

    fn index_human(&self, human: &Human) {
        if let Ok(mut m) = self.emails.write() {
            m.insert(human.email.clone(), human.id.clone());
        }
        if let (Some(external), Ok(mut m)) = (&human.external_id, self.external.write()) {
            m.insert(external.clone(), human.id.clone());
        }
    }

    /// A mark to pass to [`Directory::put_agent_read_at`] or
    /// [`Directory::put_human_read_at`]: taken before reading the store.
    pub(crate) fn mark(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Records an agent's state as read from the store after `mark` (by the change feed),
    /// unless this server wrote to the directory since: then the read may be older than
    /// that write, nothing is recorded, and `false` asks the caller to read again.
    pub(crate) fn put_agent_read_at(&self, agent: Agent, mark: u64) -> bool {
        // A poisoned map answers nothing (the decision path denies): nothing to retry.
        let Ok(mut m) = self.agents.write() else { return true };
        if self.writes.load(Ordering::SeqCst) != mark {
            return false;
        }
        m.insert(agent.id.clone(), Arc::new(agent));
        true
    }

    /// The same for a human.
    pub(crate) fn put_human_read_at(&self, human: Human, mark: u64) -> bool {
        self.index_human(&human);
        let Ok(mut m) = self.humans.write() else { return true };
        if self.writes.load(Ordering::SeqCst) != mark {
            return false;
        }
        m.insert(human.id.clone(), Arc::new(human));
        true
    }

    /// Every agent, as last written, in no particular order.
    pub fn agents(&self) -> Vec<Arc<Agent>> {
        self.agents.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Every human by id, as last written.
    pub fn humans(&self) -> HashMap<HumanId, Arc<Human>> {
        self.humans.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// How many agents are registered.
    pub fn agent_count(&self) -> usize {
        self.agents.read().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use warrant_core::{AgentStatus, Mode, Scope, UnixTime};

    use super::*;

    fn agent(status: AgentStatus) -> Agent {
        Agent {
            id: AgentId::from_random([1; 12]),
            name: "bot".into(),
            owner: HumanId::from_random([2; 12]),
            mode: Mode::Autonomous,
            max_scope: Scope::default(),
            public_key: None,
            spiffe_id: None,
            status,
            expires_at: None,
            labels: Default::default(),
            created_at: UnixTime(0),
        }
    }

    /// The change feed read an agent (active) just before this server suspended it: the
    /// read must not replace the suspension; the feed is told to read again.
    #[test]
    fn a_state_read_before_a_local_write_never_replaces_it() {
        let directory = Directory::default();
        directory.put_agent(agent(AgentStatus::Active));
        let mark = directory.mark();
        directory.put_agent(agent(AgentStatus::Suspended));
        assert!(!directory.put_agent_read_at(agent(AgentStatus::Active), mark), "read again");
        let id = AgentId::from_random([1; 12]);
        assert_eq!(directory.agent(&id).unwrap().status, AgentStatus::Suspended);
        // Read after the local write: recorded.
        let mark = directory.mark();
        assert!(directory.put_agent_read_at(agent(AgentStatus::Retired), mark));
        assert_eq!(directory.agent(&id).unwrap().status, AgentStatus::Retired);
    }
}
