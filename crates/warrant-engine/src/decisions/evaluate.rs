//! Stages 3 and 4, assess and evaluate: the guardrails look at the request first (its
//! anomaly signals against the agent's baseline, and the agent's trust after them), then
//! Cedar decides with the registry, the warrant, the caller's context, the trust and the
//! anomalies in view. An agent whose trust fell below the quarantine threshold is not
//! evaluated at all: the settle stage quarantines it.

use std::sync::Arc;

use warrant_core::guard::trust::percent;
use warrant_core::UnixTime;
use warrant_policy::DecisionInput;

use super::admit::Admitted;
use super::Decisions;
use crate::govern::replay::Recorded;
use crate::guard::{Assessment, Planned};
use crate::request::AuthorizeRequest;

/// What the guardrails made of a request, before the policy decides.
#[derive(Debug, Clone)]
pub(crate) struct Assessed {
    /// Signals, trust and the anomaly kinds Cedar sees.
    pub assessment: Assessment,
    /// Whether the trust is below the quarantine threshold (and quarantine is not in
    /// shadow mode).
    pub untrusted: bool,
    /// The graduated response to the agent's trust, if its trust is below a threshold.
    pub plan: Option<Planned>,
}

/// What the policy said.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Not evaluated: the agent's trust is below the quarantine threshold.
    Untrusted,
    /// No policy set is in force (a poisoned lock): deny.
    Unavailable,
    /// Cedar could not take the caller's input.
    BadInput(String),
    /// Cedar decided, with set `version`.
    Decided {
        /// The policy set version that decided.
        version: i64,
        /// Cedar's answer.
        verdict: warrant_policy::Verdict,
        /// Whether the set reads `context.history` (an allow is then counted in it).
        reads_history: bool,
    },
}

impl Decisions {
    /// Stage 3: the request's anomaly signals and the agent's trust after them
    /// (published as `anomaly` events).
    pub(crate) fn assess(&self, req: &AuthorizeRequest, admitted: &Admitted, now: UnixTime) -> Assessed {
        let agent = &admitted.agent.id;
        let assessment = self.guardrails.assess(agent, &req.action, &req.resource, now);
        self.guardrails.publish_signals(agent, &assessment.signals, now);
        let plan = self.guardrails.plan(&admitted.agent, assessment.trust);
        let untrusted = plan.as_ref().is_some_and(|p| p.act == Some(warrant_core::guard::response::Level::Quarantine));
        Assessed { assessment, untrusted, plan }
    }

    /// Stage 4: Cedar's verdict (the request as Cedar saw it is also kept for
    /// governance's replay of policy changes).
    pub(crate) fn evaluate(
        &self,
        req: &AuthorizeRequest,
        admitted: &Admitted,
        assessed: &Assessed,
        now: UnixTime,
    ) -> Verdict {
        if assessed.untrusted {
            return Verdict::Untrusted;
        }
        let Some(policies) = self.policy.current() else { return Verdict::Unavailable };
        let claims = &admitted.warrant.claims;
        let assessment = &assessed.assessment;
        let history = policies.compiled.uses_history().then(|| {
            self.guardrails.history_view(&admitted.agent.id, &req.action, &req.resource, &claims.task.id, now)
        });
        let input = DecisionInput {
            agent: &admitted.agent,
            claims,
            warrant: Some(&admitted.warrant.context),
            action: &req.action,
            resource: &req.resource,
            resource_attrs: req.resource_attrs.as_deref(),
            telemetry: req.context.as_deref(),
            now,
            trust: percent(assessment.trust),
            anomaly: &assessment.kinds,
            approved: admitted.approval.is_some(),
            history: history.as_ref(),
        };
        let replay = self.governance.history();
        if replay.enabled() && self.governance.config().enabled {
            replay.record(Recorded {
                agent: Arc::clone(&admitted.agent),
                claims: Arc::clone(claims),
                action: req.action.clone(),
                resource: req.resource.clone(),
                resource_attrs: req.resource_attrs.clone(),
                telemetry: req.context.clone(),
                at: now,
                trust: input.trust,
                anomaly: assessment.kinds.clone(),
                approved: input.approved,
            });
        }
        match policies.compiled.evaluate(&input) {
            Ok(verdict) => Verdict::Decided { version: policies.version, verdict, reads_history: history.is_some() },
            Err(e) => Verdict::BadInput(format!("invalid request: {e}")),
        }
    }
}
