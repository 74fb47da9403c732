//! Task states and trigger rules, as Airflow 2 defines them. The runtime decides with
//! [`decide`]; the compiler's feasibility analysis predicts the same decisions before deploy
//! (a property test holds the two together).

use crate::spec::TriggerRule;

impl TriggerRule {
    /// Every rule with its name in `pipelines.yaml` (Airflow's spelling).
    pub const ALL: &'static [(&'static str, TriggerRule)] = &[
        ("all_success", TriggerRule::AllSuccess),
        ("all_failed", TriggerRule::AllFailed),
        ("all_done", TriggerRule::AllDone),
        ("all_skipped", TriggerRule::AllSkipped),
        ("one_success", TriggerRule::OneSuccess),
        ("one_failed", TriggerRule::OneFailed),
        ("one_done", TriggerRule::OneDone),
        ("none_failed", TriggerRule::NoneFailed),
        ("none_failed_min_one_success", TriggerRule::NoneFailedMinOneSuccess),
        ("none_skipped", TriggerRule::NoneSkipped),
        ("always", TriggerRule::Always),
    ];

    /// The rule's name, as Airflow writes it (`all_success`).
    pub fn name(self) -> &'static str {
        TriggerRule::ALL.iter().find(|(_, r)| *r == self).map_or("all_success", |(n, _)| n)
    }

    pub fn parse(name: &str) -> Option<TriggerRule> {
        TriggerRule::ALL.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    /// Whether the task runs only when every upstream succeeded (so their outputs exist).
    pub fn needs_all_upstream_success(self) -> bool {
        self == TriggerRule::AllSuccess
    }
}

/// The state of a task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TiState {
    /// Created, upstreams not done yet.
    None,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    /// A sensor in `reschedule` mode between pokes: no slot held, the next poke is due at
    /// its `next_try_at`.
    UpForReschedule,
    UpstreamFailed,
    Skipped,
    /// The task is no longer in the pipeline's current version.
    Removed,
}

impl TiState {
    pub const ALL: [TiState; 11] = [
        TiState::None,
        TiState::Scheduled,
        TiState::Queued,
        TiState::Running,
        TiState::Success,
        TiState::Failed,
        TiState::UpForRetry,
        TiState::UpForReschedule,
        TiState::UpstreamFailed,
        TiState::Skipped,
        TiState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TiState::None => "none",
            TiState::Scheduled => "scheduled",
            TiState::Queued => "queued",
            TiState::Running => "running",
            TiState::Success => "success",
            TiState::Failed => "failed",
            TiState::UpForRetry => "up_for_retry",
            TiState::UpForReschedule => "up_for_reschedule",
            TiState::UpstreamFailed => "upstream_failed",
            TiState::Skipped => "skipped",
            TiState::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<TiState> {
        TiState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Finished for good (until cleared).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            TiState::Success | TiState::Failed | TiState::UpstreamFailed | TiState::Skipped | TiState::Removed
        )
    }
}

/// What a waiting task should do, given its upstreams' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    Wait,
    Skip,
    UpstreamFailed,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    total: usize,
    success: usize,
    failed: usize,
    upstream_failed: usize,
    skipped: usize,
    done: usize,
}

/// Airflow's trigger rule semantics over the states of the direct upstreams (removed
/// upstreams are ignored). A task without upstreams always runs.
pub fn decide(rule: TriggerRule, upstream: &[TiState]) -> Decision {
    let mut c = Counts::default();
    for s in upstream.iter().filter(|s| **s != TiState::Removed) {
        c.total += 1;
        match s {
            TiState::Success => c.success += 1,
            TiState::Failed => c.failed += 1,
            TiState::UpstreamFailed => c.upstream_failed += 1,
            TiState::Skipped => c.skipped += 1,
            _ => {}
        }
        if s.is_done() {
            c.done += 1;
        }
    }
    if c.total == 0 || rule == TriggerRule::Always {
        return Decision::Run;
    }
    let all_done = c.done == c.total;
    let any_failed = c.failed + c.upstream_failed > 0;
    match rule {
        TriggerRule::AllSuccess => {
            if any_failed {
                Decision::UpstreamFailed
            } else if c.skipped > 0 {
                Decision::Skip
            } else if c.success == c.total {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::AllFailed => {
            if c.success + c.skipped > 0 {
                Decision::Skip
            } else if all_done {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::AllSkipped => {
            if c.success + c.failed + c.upstream_failed > 0 {
                Decision::Skip
            } else if all_done {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::OneSuccess => {
            if c.success > 0 {
                Decision::Run
            } else if !all_done {
                Decision::Wait
            } else if c.skipped == c.total {
                Decision::Skip
            } else {
                Decision::UpstreamFailed
            }
        }
        TriggerRule::OneFailed => {
            if any_failed {
                Decision::Run
            } else if all_done {
                Decision::Skip
            } else {
                Decision::Wait
            }
        }
        TriggerRule::OneDone => {
            if c.success + c.failed > 0 {
                Decision::Run
            } else if all_done {
                Decision::Skip
            } else {
                Decision::Wait
            }
        }
        TriggerRule::NoneFailed => {
            if any_failed {
                Decision::UpstreamFailed
            } else if all_done {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if any_failed {
                Decision::UpstreamFailed
            } else if !all_done {
                Decision::Wait
            } else if c.success > 0 {
                Decision::Run
            } else {
                Decision::Skip
            }
        }
        TriggerRule::NoneSkipped => {
            if c.skipped > 0 {
                Decision::Skip
            } else if all_done {
                Decision::Run
            } else {
                Decision::Wait
            }
        }
        TriggerRule::Always => Decision::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use TiState::{Failed as F, Running as R, Skipped as K, Success as S, UpstreamFailed as U};
    use TriggerRule as T;

    #[test]
    fn airflow_trigger_rules() {
        let cases: &[(TriggerRule, &[TiState], Decision)] = &[
            (T::AllSuccess, &[S, S], Run),
            (T::AllSuccess, &[S, R], Wait),
            (T::AllSuccess, &[S, F], UpstreamFailed),
            (T::AllSuccess, &[S, U], UpstreamFailed),
            (T::AllSuccess, &[S, K], Skip),
            (T::AllFailed, &[F, U], Run),
            (T::AllFailed, &[F, S], Skip),
            (T::AllFailed, &[F, R], Wait),
            (T::AllDone, &[S, F, K, U], Run),
            (T::AllDone, &[S, R], Wait),
            (T::AllSkipped, &[K, K], Run),
            (T::AllSkipped, &[K, S], Skip),
            (T::OneSuccess, &[S, R], Run),
            (T::OneSuccess, &[F, R], Wait),
            (T::OneSuccess, &[F, F], UpstreamFailed),
            (T::OneSuccess, &[K, K], Skip),
            (T::OneFailed, &[F, R], Run),
            (T::OneFailed, &[S, S], Skip),
            (T::OneDone, &[F, R], Run),
            (T::OneDone, &[K, K], Skip),
            (T::NoneFailed, &[S, K], Run),
            (T::NoneFailed, &[S, U], UpstreamFailed),
            (T::NoneFailedMinOneSuccess, &[S, K], Run),
            (T::NoneFailedMinOneSuccess, &[K, K], Skip),
            (T::NoneFailedMinOneSuccess, &[K, F], UpstreamFailed),
            (T::NoneSkipped, &[S, F], Run),
            (T::NoneSkipped, &[S, K], Skip),
            (T::Always, &[R, R], Run),
            (T::AllSuccess, &[], Run),
        ];
        for (rule, ups, expected) in cases {
            assert_eq!(decide(*rule, ups), *expected, "{rule:?} over {ups:?}");
        }
    }

    #[test]
    fn rules_round_trip_as_text() {
        for (name, rule) in TriggerRule::ALL {
            assert_eq!(TriggerRule::parse(name), Some(*rule));
            assert_eq!(rule.name(), *name);
        }
    }

    #[test]
    fn states_round_trip_as_text() {
        for s in TiState::ALL {
            assert_eq!(TiState::parse(s.as_str()), Some(s));
        }
    }
}
