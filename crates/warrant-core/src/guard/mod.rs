//! Runtime guardrails: what an agent is doing right now changes its next decision.
//!
//! Everything here is pure: the engine passes the time in and keeps the state.
//!
//! * [`signal`]: anomaly signals (a novel action or resource prefix, a rate spike, a deny
//!   streak, a delegation burst, activity at an unusual hour).
//! * [`baseline`]: what an agent normally does, learned online from its allowed actions.
//! * [`trust`]: the trust score in [0, 1], lowered by signals, recovering with time.
//! * [`rate`]: rate limits (GCRA) per agent, task and human.
//! * [`budget`]: budgets set at minting, attenuated on delegation, charged up the tree.
//! * [`approval`]: human approval (step-up) of a `pending` decision.
//! * [`escalation`]: probing contained at the smallest scale (warrant, task, agent).
//! * [`history`]: an agent's recent allowed activity over sliding windows, for Cedar.
//! * [`response`]: the graduated response to falling trust, from observing to quarantine.

pub mod approval;
pub mod baseline;
pub mod budget;
pub mod escalation;
pub mod history;
pub mod rate;
pub mod response;
pub mod signal;
pub mod trust;
