//! Budgets: limits on telemetry counters, set at minting, attenuated on delegation and
//! charged up the whole delegation tree.
//!
//! A [`Budget`] maps a counter (a telemetry field a request reports, e.g.
//! `estimated_cost`) to a limit. A child warrant's budget is [attenuated](attenuate) to
//! what its parent has left. The [`Ledger`] then charges every request's amounts to its
//! warrant and to every ancestor with a budget on the same counter, all or nothing, so a
//! tree of sub-agents can never spend more than its root was given.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::id::WarrantId;
use crate::time::UnixTime;

/// Counter name → limit.
pub type Budget = BTreeMap<String, i64>;

/// The most counters one budget may hold.
pub const MAX_COUNTERS: usize = 16;

/// The longest counter name, in bytes.
pub const MAX_COUNTER_LEN: usize = 64;

/// How far up the parent links the ledger walks (delegation depth is far smaller; this
/// only bounds a corrupt, cyclic ledger).
pub const MAX_WALK: usize = 64;

/// Why a budget is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// An entry is not `counter=limit`.
    #[error("`{item}` is not a budget entry: write `counter=limit`, e.g. `estimated_cost=5000`")]
    Syntax {
        /// The entry.
        item: String,
    },
    /// A counter name does not match `[a-z][a-z0-9_]{0,63}`.
    #[error(
        "`{counter}` is not a budget counter: use 1 to 64 characters from a-z, 0-9 and `_`, starting with a letter"
    )]
    BadCounter {
        /// The name.
        counter: String,
    },
    /// A limit is not an integer.
    #[error("the limit of budget `{counter}` must be an integer, not `{value}`")]
    BadLimit {
        /// The counter.
        counter: String,
        /// The limit as written.
        value: String,
    },
    /// A limit is negative.
    #[error("the limit of budget `{counter}` cannot be negative ({limit})")]
    NegativeLimit {
        /// The counter.
        counter: String,
        /// The limit.
        limit: i64,
    },
    /// A counter is given twice.
    #[error("budget `{counter}` is given more than once")]
    Duplicate {
        /// The counter.
        counter: String,
    },
    /// More than [`MAX_COUNTERS`] counters.
    #[error("a budget may have at most {max} counters, not {count}")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The maximum.
        max: usize,
    },
}

/// Whether `name` matches `[a-z][a-z0-9_]{0,63}`.
pub fn valid_counter(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_COUNTER_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a budget built elsewhere (e.g. from JSON): valid counter names, no negative
/// limit, at most [`MAX_COUNTERS`] counters.
pub fn check_budget(b: &Budget) -> Result<(), BudgetError> {
    if b.len() > MAX_COUNTERS {
        return Err(BudgetError::TooMany { count: b.len(), max: MAX_COUNTERS });
    }
    for (counter, &limit) in b {
        if !valid_counter(counter) {
            return Err(BudgetError::BadCounter { counter: counter.clone() });
        }
        if limit < 0 {
            return Err(BudgetError::NegativeLimit { counter: counter.clone(), limit });
        }
    }
    Ok(())
}

/// Parses `estimated_cost=5000 rows=100000`: `counter=limit` entries separated by spaces
/// or commas. An empty (or blank) string is an empty budget.
pub fn parse_budget(s: &str) -> Result<Budget, BudgetError> {
    let mut budget = Budget::new();
    let items: Vec<&str> = s.split(|c: char| c == ',' || c.is_whitespace()).filter(|i| !i.is_empty()).collect();
    if items.len() > MAX_COUNTERS {
        return Err(BudgetError::TooMany { count: items.len(), max: MAX_COUNTERS });
    }
    for item in items {
        let Some((counter, value)) = item.split_once('=') else {
            return Err(BudgetError::Syntax { item: item.to_owned() });
        };
        if !valid_counter(counter) {
            return Err(BudgetError::BadCounter { counter: counter.to_owned() });
        }
        let limit: i64 = value
            .parse()
            .map_err(|_| BudgetError::BadLimit { counter: counter.to_owned(), value: value.to_owned() })?;
        if limit < 0 {
            return Err(BudgetError::NegativeLimit { counter: counter.to_owned(), limit });
        }
        if budget.insert(counter.to_owned(), limit).is_some() {
            return Err(BudgetError::Duplicate { counter: counter.to_owned() });
        }
    }
    Ok(budget)
}

/// Formats a budget as [`parse_budget`] reads it: `counter=limit` entries separated by
/// single spaces, in counter order; an empty budget is the empty string.
pub fn format_budget(b: &Budget) -> String {
    b.iter().map(|(counter, limit)| format!("{counter}={limit}")).collect::<Vec<_>>().join(" ")
}

/// A child's budget. For every counter the parent has left, the smaller of the requested
/// limit (unlimited when not requested) and what is left; a counter requested that the
/// parent has no budget on is kept as requested. No limit is below 0.
pub fn attenuate(parent_left: &Budget, requested: Option<&Budget>) -> Budget {
    let mut child = Budget::new();
    for (counter, &left) in parent_left {
        let wanted = requested.and_then(|r| r.get(counter)).copied().unwrap_or(i64::MAX);
        child.insert(counter.clone(), wanted.min(left).max(0));
    }
    for (counter, &wanted) in requested.into_iter().flatten() {
        child.entry(counter.clone()).or_insert(wanted.max(0));
    }
    child
}

/// One amount charged to one warrant's budget, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The warrant charged (the acting one or an ancestor).
    pub warrant: WarrantId,
    /// The counter.
    pub counter: String,
    /// The amount, greater than 0.
    pub amount: i64,
    /// When the charged warrant expires: how long its spending must be remembered.
    pub expires_at: UnixTime,
}

/// Why a charge was refused. Nothing was charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChargeError {
    /// A warrant on the walk has too little left.
    #[error("budget `{counter}` of warrant `{warrant}` has {left} left; this action needs {needed}")]
    Exceeded {
        /// The warrant with the least left.
        warrant: WarrantId,
        /// The counter.
        counter: String,
        /// What it has left.
        left: i64,
        /// What the request needs.
        needed: i64,
    },
    /// The request reported a negative amount for a budgeted counter.
    #[error("`{counter}` must be a non-negative integer to be charged to a budget")]
    BadAmount {
        /// The counter.
        counter: String,
    },
    /// What was spent could not be read or charged (the budget's state is unavailable),
    /// so nothing is charged and the request is refused (fail closed).
    #[error("the budget could not be charged: {0}")]
    Unavailable(String),
}

/// One warrant in the [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Its parent warrant, if it was delegated.
    pub parent: Option<WarrantId>,
    /// Its own limits (possibly none, when it is only a link to budgeted ancestors).
    pub limits: Budget,
    /// What has been charged to it, per counter.
    pub spent: Budget,
    /// When the warrant expires.
    pub expires_at: UnixTime,
}

/// Every live warrant with a budget, with what it has spent. Spending by any warrant is
/// charged to it and to every ancestor that has a budget on that counter, all or
/// nothing, so a tree of sub-agents can never spend more than its root was given.
///
/// Parents must be [opened](Ledger::open) before their children: a warrant's walk goes up
/// its parent links only while they are in the ledger.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: HashMap<WarrantId, LedgerEntry>,
}

impl Ledger {
    /// Records a warrant. It is recorded when it has a budget of its own, or when its
    /// parent is in the ledger (so that charges can walk up through it); otherwise there
    /// is nothing to track. Opening a warrant already in the ledger updates its parent,
    /// limits and expiry and keeps what it has spent.
    pub fn open(&mut self, jti: WarrantId, parent: Option<WarrantId>, limits: Budget, expires_at: UnixTime) {
        let linked = parent.as_ref().is_some_and(|p| self.entries.contains_key(p));
        if limits.is_empty() && !linked && !self.entries.contains_key(&jti) {
            return;
        }
        let spent = self.entries.remove(&jti).map(|e| e.spent).unwrap_or_default();
        self.entries.insert(jti, LedgerEntry { parent, limits, spent, expires_at });
    }

    /// Whether no warrant is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many warrants are recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `jti`, if recorded.
    pub fn entry(&self, jti: &WarrantId) -> Option<&LedgerEntry> {
        self.entries.get(jti)
    }

    /// `jti` and its recorded ancestors, nearest first: at most [`MAX_WALK`] of them, and
    /// each at most once (a cycle ends the walk).
    fn walk<'a>(&'a self, jti: &'a WarrantId) -> Vec<(&'a WarrantId, &'a LedgerEntry)> {
        let mut walk: Vec<(&WarrantId, &LedgerEntry)> = Vec::new();
        let mut next = Some(jti);
        while let Some(id) = next {
            if walk.len() >= MAX_WALK || walk.iter().any(|(seen, _)| *seen == id) {
                break;
            }
            let Some((id, entry)) = self.entries.get_key_value(id) else {
                break;
            };
            walk.push((id, entry));
            next = entry.parent.as_ref();
        }
        walk
    }

    /// What `jti` may still spend: per counter, the least that it or any recorded
    /// ancestor has left (`limit - spent`). Empty when `jti` is not recorded.
    pub fn left(&self, jti: &WarrantId) -> Budget {
        let mut left = Budget::new();
        for (_, entry) in self.walk(jti) {
            for (counter, &limit) in &entry.limits {
                let l = limit.saturating_sub(entry.spent.get(counter).copied().unwrap_or(0));
                left.entry(counter.clone()).and_modify(|v| *v = (*v).min(l)).or_insert(l);
            }
        }
        left
    }

    /// The counters that matter to `jti`: those budgeted by it or a recorded ancestor, so
    /// the caller extracts only these from a request's telemetry. Empty when `jti` is not
    /// recorded.
    pub fn counters(&self, jti: &WarrantId) -> Vec<String> {
        let set: BTreeSet<&String> = self.walk(jti).into_iter().flat_map(|(_, e)| e.limits.keys()).collect();
        set.into_iter().cloned().collect()
    }

    /// Charges `amounts` (counter → amount, from the request's telemetry) to `jti` and
    /// every recorded ancestor with a limit on the counter, all or nothing.
    ///
    /// Counters nobody on the walk budgets are ignored. A negative amount for a budgeted
    /// counter is [`BadAmount`](ChargeError::BadAmount); an amount more than some warrant
    /// has left is [`Exceeded`](ChargeError::Exceeded), naming the warrant with the least
    /// left (the first such counter in name order). On error nothing is charged. On
    /// success, returns the charges made: one per warrant and counter, amounts above 0.
    pub fn charge(&mut self, jti: &WarrantId, amounts: &Budget) -> Result<Vec<Charge>, ChargeError> {
        let mut plan = Vec::new();
        let walk = self.walk(jti);
        for (counter, &amount) in amounts {
            let budgeted: Vec<(&WarrantId, i64)> = walk
                .iter()
                .filter_map(|(id, e)| {
                    let limit = e.limits.get(counter)?;
                    Some((*id, limit.saturating_sub(e.spent.get(counter).copied().unwrap_or(0))))
                })
                .collect();
            let Some(&(tightest, left)) = budgeted.iter().min_by_key(|(_, left)| *left) else {
                continue;
            };
            if amount < 0 {
                return Err(ChargeError::BadAmount { counter: counter.clone() });
            }
            if amount == 0 {
                continue;
            }
            if amount > left {
                return Err(ChargeError::Exceeded {
                    warrant: tightest.clone(),
                    counter: counter.clone(),
                    left,
                    needed: amount,
                });
            }
            plan.extend(budgeted.iter().map(|(id, _)| Charge {
                warrant: (*id).clone(),
                counter: counter.clone(),
                amount,
                expires_at: self.entries.get(*id).map_or(UnixTime(i64::MAX), |e| e.expires_at),
            }));
        }
        for charge in &plan {
            if let Some(entry) = self.entries.get_mut(&charge.warrant) {
                let spent = entry.spent.entry(charge.counter.clone()).or_insert(0);
                *spent = spent.saturating_add(charge.amount);
            }
        }
        Ok(plan)
    }

    /// Restores spending loaded from storage: adds `spent` to what `jti` has spent on
    /// `counter`. Does nothing when `jti` is not recorded or `spent` is not above 0.
    pub fn restore(&mut self, jti: &WarrantId, counter: &str, spent: i64) {
        if spent <= 0 {
            return;
        }
        if let Some(entry) = self.entries.get_mut(jti) {
            let total = entry.spent.entry(counter.to_owned()).or_insert(0);
            *total = total.saturating_add(spent);
        }
    }

    /// Gives back charges returned by [`charge`](Self::charge) (e.g. when the decision
    /// could not be recorded). Spending never goes below 0.
    pub fn refund(&mut self, charges: &[Charge]) {
        for charge in charges.iter().filter(|c| c.amount > 0) {
            let Some(entry) = self.entries.get_mut(&charge.warrant) else {
                continue;
            };
            if let Some(spent) = entry.spent.get_mut(&charge.counter) {
                *spent = spent.saturating_sub(charge.amount).max(0);
                if *spent == 0 {
                    entry.spent.remove(&charge.counter);
                }
            }
        }
    }

    /// Drops the warrants expired at `now` (`expires_at <= now`).
    pub fn sweep(&mut self, now: UnixTime) {
        self.entries.retain(|_, e| e.expires_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: UnixTime = UnixTime(2_000_000_000);

    fn b(s: &str) -> Budget {
        parse_budget(s).unwrap()
    }

    fn w(n: u8) -> WarrantId {
        WarrantId::from_random([n; 12])
    }

    #[test]
    fn parse_and_format_round_trip() {
        let budget = b("estimated_cost=5000 rows=100000");
        assert_eq!(budget, Budget::from([("estimated_cost".into(), 5000), ("rows".into(), 100_000)]));
        assert_eq!(b("rows=100000,estimated_cost=5000"), budget);
        assert_eq!(b(" rows=100000 ,\testimated_cost=5000\n"), budget);
        assert_eq!(format_budget(&budget), "estimated_cost=5000 rows=100000");
        assert_eq!(b(&format_budget(&budget)), budget);
        assert_eq!(b(""), Budget::new());
        assert_eq!(b("  "), Budget::new());
        assert_eq!(format_budget(&Budget::new()), "");
        assert_eq!(b("x=0"), Budget::from([("x".into(), 0)]));
    }

    #[test]
    fn refuses_bad_budgets() {
        assert_eq!(parse_budget("cost"), Err(BudgetError::Syntax { item: "cost".into() }));
        assert_eq!(parse_budget("Cost=1"), Err(BudgetError::BadCounter { counter: "Cost".into() }));
        assert!(matches!(parse_budget("1cost=1"), Err(BudgetError::BadCounter { .. })));
        assert!(matches!(parse_budget("=1"), Err(BudgetError::BadCounter { .. })));
        assert!(matches!(parse_budget(&format!("{}=1", "a".repeat(65))), Err(BudgetError::BadCounter { .. })));
        assert!(parse_budget(&format!("{}=1", "a".repeat(64))).is_ok());
        assert_eq!(
            parse_budget("cost=lots"),
            Err(BudgetError::BadLimit { counter: "cost".into(), value: "lots".into() })
        );
        assert!(matches!(parse_budget("cost=1.5"), Err(BudgetError::BadLimit { .. })));
        assert_eq!(parse_budget("cost=-1"), Err(BudgetError::NegativeLimit { counter: "cost".into(), limit: -1 }));
        assert_eq!(parse_budget("cost=1 cost=2"), Err(BudgetError::Duplicate { counter: "cost".into() }));
        let many: Vec<String> = (0..17).map(|i| format!("c{i}=1")).collect();
        assert_eq!(parse_budget(&many.join(" ")), Err(BudgetError::TooMany { count: 17, max: 16 }));
        assert_eq!(
            parse_budget("cost=-1").unwrap_err().to_string(),
            "the limit of budget `cost` cannot be negative (-1)"
        );
        assert!(check_budget(&b("a=1 b=2")).is_ok());
        assert!(check_budget(&Budget::from([("A".into(), 1)])).is_err());
        assert!(check_budget(&Budget::from([("a".into(), -1)])).is_err());
    }

    #[test]
    fn attenuation_takes_the_smaller_and_keeps_new_counters() {
        let left = b("cost=100 rows=50");
        assert_eq!(attenuate(&left, None), left);
        assert_eq!(attenuate(&left, Some(&b("cost=30"))), b("cost=30 rows=50"));
        assert_eq!(attenuate(&left, Some(&b("cost=500 rows=10"))), b("cost=100 rows=10"));
        assert_eq!(attenuate(&left, Some(&b("tokens=7"))), b("cost=100 rows=50 tokens=7"));
        assert_eq!(attenuate(&Budget::new(), Some(&b("tokens=7"))), b("tokens=7"));
        assert_eq!(attenuate(&Budget::from([("cost".into(), -5)]), None), b("cost=0"));
    }

    /// root (cost=100) → child (cost=60) → grandchild (no budget of its own).
    fn tree() -> Ledger {
        let mut l = Ledger::default();
        l.open(w(1), None, b("cost=100"), EXP);
        l.open(w(2), Some(w(1)), b("cost=60 rows=5"), EXP);
        l.open(w(3), Some(w(2)), Budget::new(), EXP);
        l
    }

    #[test]
    fn only_budgeted_warrants_and_their_descendants_are_recorded() {
        let mut l = tree();
        assert_eq!(l.len(), 3);
        l.open(w(9), None, Budget::new(), EXP);
        l.open(w(10), Some(w(9)), Budget::new(), EXP);
        assert_eq!(l.len(), 3);
        assert!(l.left(&w(9)).is_empty());
        assert!(l.counters(&w(9)).is_empty());
        assert!(Ledger::default().is_empty());
    }

    #[test]
    fn charges_walk_up_the_tree() {
        let mut l = tree();
        assert_eq!(l.counters(&w(3)), ["cost", "rows"]);
        assert_eq!(l.left(&w(3)), b("cost=60 rows=5"));
        let charges = l.charge(&w(3), &b("cost=10 rows=2 unrelated=1000")).unwrap();
        let charged: Vec<(WarrantId, &str, i64)> =
            charges.iter().map(|c| (c.warrant.clone(), c.counter.as_str(), c.amount)).collect();
        assert_eq!(charged, [(w(2), "cost", 10), (w(1), "cost", 10), (w(2), "rows", 2)]);
        assert_eq!(l.left(&w(3)), b("cost=50 rows=3"));
        assert_eq!(l.left(&w(1)), b("cost=90"));
        // The root's own spending limits the child too.
        l.charge(&w(1), &b("cost=80")).unwrap();
        assert_eq!(l.left(&w(3)), b("cost=10 rows=3"));
        assert_eq!(l.left(&w(2)), b("cost=10 rows=3"));
        // Zero amounts charge nothing.
        assert_eq!(l.charge(&w(3), &b("cost=0")).unwrap(), []);
    }

    #[test]
    fn an_exceeded_charge_changes_nothing_and_names_the_tightest() {
        let mut l = tree();
        l.charge(&w(1), &b("cost=70")).unwrap();
        let before = (l.left(&w(1)), l.left(&w(2)), l.left(&w(3)));
        let err = l.charge(&w(3), &b("cost=31 rows=1")).unwrap_err();
        assert_eq!(err, ChargeError::Exceeded { warrant: w(1), counter: "cost".into(), left: 30, needed: 31 });
        assert_eq!(err.to_string(), format!("budget `cost` of warrant `{}` has 30 left; this action needs 31", w(1)));
        // `rows` was fine but is not charged either.
        assert_eq!((l.left(&w(1)), l.left(&w(2)), l.left(&w(3))), before);
        let err = l.charge(&w(3), &b("cost=1 rows=6")).unwrap_err();
        assert!(matches!(err, ChargeError::Exceeded { ref counter, .. } if counter == "rows"));
        assert_eq!((l.left(&w(1)), l.left(&w(2)), l.left(&w(3))), before);
        // A negative amount for a budgeted counter is refused; for others, ignored.
        let negative = Budget::from([("cost".into(), -1)]);
        assert_eq!(l.charge(&w(3), &negative), Err(ChargeError::BadAmount { counter: "cost".into() }));
        assert!(l.charge(&w(3), &Budget::from([("other".into(), -1)])).is_ok());
        assert_eq!((l.left(&w(1)), l.left(&w(2)), l.left(&w(3))), before);
    }

    #[test]
    fn refund_and_restore() {
        let mut l = tree();
        let charges = l.charge(&w(3), &b("cost=25 rows=5")).unwrap();
        assert_eq!(l.left(&w(2)), b("cost=35 rows=0"));
        l.refund(&charges);
        assert_eq!(l.left(&w(3)), b("cost=60 rows=5"));
        assert_eq!(l.entry(&w(2)).unwrap().spent, Budget::new());
        // Refunding twice never goes below nothing spent.
        l.refund(&charges);
        assert_eq!(l.left(&w(1)), b("cost=100"));

        for c in &charges {
            l.restore(&c.warrant, &c.counter, c.amount);
        }
        assert_eq!(l.left(&w(2)), b("cost=35 rows=0"));
        l.restore(&w(42), "cost", 10);
        l.restore(&w(1), "cost", -10);
        assert_eq!(l.left(&w(1)), b("cost=75"));
    }

    #[test]
    fn reopening_keeps_spending() {
        let mut l = tree();
        l.charge(&w(2), &b("cost=20")).unwrap();
        l.open(w(2), Some(w(1)), b("cost=60 rows=5"), EXP);
        assert_eq!(l.left(&w(2)), b("cost=40 rows=5"));
    }

    #[test]
    fn sweep_drops_expired_warrants() {
        let mut l = Ledger::default();
        l.open(w(1), None, b("cost=100"), UnixTime(1_000));
        l.open(w(2), Some(w(1)), b("cost=10"), UnixTime(500));
        l.sweep(UnixTime(499));
        assert_eq!(l.len(), 2);
        l.sweep(UnixTime(500));
        assert_eq!(l.len(), 1);
        assert!(l.left(&w(2)).is_empty());
        assert_eq!(l.left(&w(1)), b("cost=100"));
        l.sweep(UnixTime(1_000));
        assert!(l.is_empty());
    }

    #[test]
    fn cycles_and_deep_chains_are_bounded() {
        // A cycle (only a corrupt store could produce one): each warrant is charged once.
        let mut l = Ledger::default();
        l.open(w(1), Some(w(2)), b("cost=10"), EXP);
        l.open(w(2), Some(w(1)), b("cost=10"), EXP);
        assert_eq!(l.left(&w(1)), b("cost=10"));
        let charges = l.charge(&w(1), &b("cost=4")).unwrap();
        assert_eq!(charges.len(), 2);
        assert_eq!(l.left(&w(2)), b("cost=6"));

        // A chain longer than the walk: the root beyond it is not reached.
        let mut l = Ledger::default();
        let id = |i: usize| WarrantId::parse(&format!("wrt_{i}")).unwrap();
        l.open(id(0), None, b("cost=1"), EXP);
        for i in 1..=MAX_WALK {
            l.open(id(i), Some(id(i - 1)), Budget::new(), EXP);
        }
        assert_eq!(l.left(&id(MAX_WALK - 1)), b("cost=1"));
        assert!(l.left(&id(MAX_WALK)).is_empty());
    }
}
