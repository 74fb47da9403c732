//! Which tasks can ever run. Each task's possible end states are derived from its
//! upstreams' and its trigger rule, in dependency order, the way the scheduler will decide
//! them: a task whose rule no combination of upstream states satisfies never runs (it ends
//! skipped or upstream_failed every time), and one stuck behind a pool too small for it
//! never ends at all, holding up everything downstream.

use crate::model::{Pipeline, Task, TaskKind, TriggerRule};
use std::collections::HashMap;

/// A set of end states, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct States(u8);

const SUCCESS: u8 = 1;
const FAILED: u8 = 2;
const SKIPPED: u8 = 4;
const UPSTREAM_FAILED: u8 = 8;

impl States {
    fn has(self, bits: u8) -> bool {
        self.0 & bits != 0
    }
    fn only(self, bits: u8) -> bool {
        self.0 & !bits == 0
    }
}

/// A task that can never run, and why, in words.
#[derive(Debug, PartialEq, Eq)]
pub struct NeverRuns<'p> {
    pub task: &'p str,
    /// The upstream id the reason names, to point the diagnostic at (None: the task itself).
    pub upstream: Option<&'p str>,
    pub reason: String,
}

/// Tasks of an acyclic pipeline that can never run. `pool_too_small` says which tasks can
/// never get their pool slots (reported as errors elsewhere; here they are the cause).
pub fn never_running<'p>(p: &'p Pipeline, pool_too_small: impl Fn(&str) -> bool) -> Vec<NeverRuns<'p>> {
    let index: HashMap<&str, usize> = p.tasks.iter().enumerate().map(|(i, t)| (t.id.value.as_str(), i)).collect();
    let mut states: Vec<Option<States>> = vec![None; p.tasks.len()];
    let mut found = Vec::new();
    // Tasks may be listed before their upstreams: settle in rounds (acyclic, so it ends).
    let mut pending: Vec<usize> = (0..p.tasks.len()).collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|&i| {
            let t = &p.tasks[i];
            let ups: Option<Vec<(&str, States)>> = t
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.value.as_str()).map(|&u| (d.value.as_str(), u)))
                .map(|(id, u)| states[u].map(|s| (id, s)))
                .collect();
            let Some(ups) = ups else { return true };
            let (mut result, never) =
                settle(t.id.value.as_str(), t.trigger_rule.value, &ups, pool_too_small(&t.id.value));
            if let Some(n) = never {
                found.push(n);
            }
            if result.has(SUCCESS) && (may_skip_itself(t) || is_branch_target(p, t)) {
                result.0 |= SKIPPED;
            }
            states[i] = Some(result);
            false
        });
        if pending.len() == before {
            break; // a cycle: reported elsewhere
        }
    }
    found
}

/// Whether a task that runs can end skipped by itself: a soft-failing sensor can time
/// out, a Rust body can return the skip outcome, a shell command can exit with its
/// `skip_exit_code`, an http step can get one of its `skip_status`.
fn may_skip_itself(t: &Task) -> bool {
    if t.sensor.as_ref().is_some_and(|s| s.soft_fail) {
        return true;
    }
    match &t.kind {
        TaskKind::Rust { .. } | TaskKind::Python { .. } => true,
        TaskKind::Shell { skip_exit_code, .. } => skip_exit_code.is_some(),
        TaskKind::Http(http) => !http.skip_status.is_empty(),
        TaskKind::Sql { .. } => false,
    }
}

/// Whether an upstream's `branch` may leave this task out (it is then skipped).
fn is_branch_target(p: &Pipeline, t: &Task) -> bool {
    p.tasks.iter().any(|u| u.branch.iter().any(|b| b.value == t.id.value))
}

fn settle<'p>(
    task: &'p str,
    rule: TriggerRule,
    ups: &[(&'p str, States)],
    stuck: bool,
) -> (States, Option<NeverRuns<'p>>) {
    let never = |upstream, reason: String| Some(NeverRuns { task, upstream, reason });
    if stuck {
        return (States(0), None);
    }
    if ups.is_empty() {
        return (States(SUCCESS | FAILED), None);
    }
    if rule != TriggerRule::Always
        && let Some((up, _)) = ups.iter().find(|(_, s)| s.0 == 0)
    {
        let reason = format!("its upstream `{up}` never finishes");
        return (States(0), never(Some(up), reason));
    }
    let all = |bits: u8| ups.iter().all(|(_, s)| s.has(bits));
    let any = |bits: u8| ups.iter().any(|(_, s)| s.has(bits));
    let first_without = |bits: u8| ups.iter().find(|(_, s)| !s.has(bits)).map(|(id, _)| *id);
    let done = SUCCESS | FAILED | UPSTREAM_FAILED | SKIPPED;
    let (met, unmet) = match rule {
        TriggerRule::AllSuccess => (all(SUCCESS), ups.iter().any(|(_, s)| !s.only(SUCCESS))),
        TriggerRule::AllFailed => {
            (all(FAILED | UPSTREAM_FAILED), ups.iter().any(|(_, s)| !s.only(FAILED | UPSTREAM_FAILED)))
        }
        TriggerRule::AllDone | TriggerRule::Always => (true, false),
        TriggerRule::AllSkipped => (all(SKIPPED), ups.iter().any(|(_, s)| !s.only(SKIPPED))),
        TriggerRule::OneSuccess => (any(SUCCESS), ups.iter().all(|(_, s)| !s.only(SUCCESS))),
        TriggerRule::OneFailed => {
            (any(FAILED | UPSTREAM_FAILED), ups.iter().all(|(_, s)| !s.only(FAILED | UPSTREAM_FAILED)))
        }
        TriggerRule::OneDone => (any(SUCCESS | FAILED), ups.iter().all(|(_, s)| !s.only(SUCCESS | FAILED))),
        TriggerRule::NoneFailed => (all(SUCCESS | SKIPPED), any(FAILED | UPSTREAM_FAILED)),
        TriggerRule::NoneFailedMinOneSuccess => {
            (all(SUCCESS | SKIPPED) && any(SUCCESS), any(FAILED | UPSTREAM_FAILED) || all(done & !SUCCESS))
        }
        TriggerRule::NoneSkipped => (all(SUCCESS | FAILED | UPSTREAM_FAILED), any(SKIPPED)),
    };
    let mut result = if met { SUCCESS | FAILED } else { 0 };
    if unmet || !met {
        result |= if any(FAILED | UPSTREAM_FAILED) { UPSTREAM_FAILED | SKIPPED } else { SKIPPED };
    }
    if met {
        return (States(result), None);
    }
    let wanted = match rule {
        TriggerRule::AllSuccess | TriggerRule::OneSuccess | TriggerRule::NoneFailedMinOneSuccess => {
            ("succeed", SUCCESS)
        }
        TriggerRule::AllFailed | TriggerRule::OneFailed => ("fail", FAILED | UPSTREAM_FAILED),
        TriggerRule::AllSkipped => ("be skipped", SKIPPED),
        TriggerRule::OneDone => ("run", SUCCESS | FAILED),
        TriggerRule::NoneFailed => ("succeed or be skipped", SUCCESS | SKIPPED),
        _ => ("finish", SUCCESS | FAILED | UPSTREAM_FAILED),
    };
    let culprit = first_without(wanted.1).or_else(|| ups.first().map(|(id, _)| *id));
    let reason = match culprit {
        Some(up) => format!("its trigger rule `{}` needs `{up}` to {}, which never happens", rule.name(), wanted.0),
        None => format!("its trigger rule `{}` can never be met", rule.name()),
    };
    (States(result), never(culprit, reason))
}

#[cfg(test)]
mod tests {
    //! The analysis must agree with the runtime's own decision function: for every rule and
    //! every set of possible upstream end states, the task can run exactly when some
    //! combination of those states makes `decide` run it, and every state `decide` can
    //! reach is among the predicted ones.

    use super::*;
    use proptest::prelude::*;
    use sluice_contract::rules::{Decision, TiState, decide};

    const END_STATES: [(u8, TiState); 4] = [
        (SUCCESS, TiState::Success),
        (FAILED, TiState::Failed),
        (SKIPPED, TiState::Skipped),
        (UPSTREAM_FAILED, TiState::UpstreamFailed),
    ];

    /// Every end state `decide` can give the task, over every combination of upstream
    /// states drawn from the sets.
    fn reachable(rule: TriggerRule, ups: &[States]) -> States {
        let choices: Vec<Vec<TiState>> =
            ups.iter().map(|s| END_STATES.iter().filter(|(bit, _)| s.has(*bit)).map(|(_, st)| *st).collect()).collect();
        let mut reached = 0;
        let mut combo = vec![0usize; choices.len()];
        loop {
            let states: Vec<TiState> = combo.iter().zip(&choices).map(|(&i, c)| c[i]).collect();
            reached |= match decide(rule, &states) {
                Decision::Run => SUCCESS | FAILED,
                Decision::Skip => SKIPPED,
                Decision::UpstreamFailed => UPSTREAM_FAILED,
                Decision::Wait => panic!("{rule:?} waits although every upstream is done: {states:?}"),
            };
            // The next combination, as an odometer; done when it wraps.
            let Some(digit) = (0..combo.len()).find(|&d| combo[d] + 1 < choices[d].len()) else { break };
            combo[digit] += 1;
            combo[..digit].fill(0);
        }
        States(reached)
    }

    fn rule() -> impl Strategy<Value = TriggerRule> {
        proptest::sample::select(TriggerRule::ALL.iter().map(|(_, r)| *r).collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn feasibility_agrees_with_decide(rule in rule(), sets in proptest::collection::vec(1u8..16, 0..5)) {
            let ids = ["a", "b", "c", "d", "e"];
            let ups: Vec<(&str, States)> = sets.iter().enumerate().map(|(i, s)| (ids[i], States(*s))).collect();
            let (predicted, never) = settle("t", rule, &ups, false);
            let actual = reachable(rule, &ups.iter().map(|(_, s)| *s).collect::<Vec<_>>());
            prop_assert!(predicted.0 & actual.0 == actual.0, "{rule:?} over {sets:?}: predicted {predicted:?}, reachable {actual:?}");
            prop_assert_eq!(predicted.has(SUCCESS), actual.has(SUCCESS), "{:?} over {:?}", rule, sets);
            prop_assert_eq!(never.is_some(), !actual.has(SUCCESS), "{:?} over {:?}", rule, sets);
        }
    }
}
