//! Which task instances an operator's clear reaches: a pure decision, shared by the REST
//! API and the UI. A queued or running task instance is never cleared: it ends first.

use crate::rules::TiState;
use crate::spec::PipelineSpec;
use crate::store::TiRow;

/// Which states a clear keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    Any,
    /// `failed` and `upstream_failed` (Airflow's `only_failed`).
    Failed,
    /// `running` (Airflow's `only_running`): never clearable, so it clears nothing.
    Running,
}

impl Only {
    fn admits(self, state: TiState) -> bool {
        match self {
            Only::Any => true,
            Only::Failed => matches!(state, TiState::Failed | TiState::UpstreamFailed),
            Only::Running => state == TiState::Running,
        }
    }
}

/// The ids of the tasks at `tasks` (indices into the pipeline's tasks) whose instance in
/// `instances` a clear restricted to `only` would clear, in the pipeline's task order.
pub fn clearable(p: &PipelineSpec, tasks: &[usize], instances: &[TiRow], only: Only) -> Vec<&'static str> {
    let mut picked: Vec<usize> = tasks.to_vec();
    picked.sort_unstable();
    picked.dedup();
    picked
        .into_iter()
        .filter_map(|t| p.tasks.get(t))
        .filter(|t| {
            instances.iter().any(|ti| {
                ti.task_id == t.id && only.admits(ti.state) && !matches!(ti.state, TiState::Queued | TiState::Running)
            })
        })
        .map(|t| t.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{graphed, pipeline, task};
    use crate::spec::TriggerRule::AllSuccess;

    fn instance(task_id: &str, state: TiState) -> TiRow {
        TiRow {
            id: 1,
            run_pk: 1,
            task_id: task_id.into(),
            state,
            try_number: 1,
            max_tries: 1,
            priority_weight: 1,
            error: None,
            start_date: None,
            end_date: None,
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: "default".into(),
            queued_at: None,
            worker: None,
            note: None,
        }
    }

    #[test]
    fn a_clear_keeps_to_its_states_and_never_takes_a_busy_task() {
        static TASKS: crate::spec::PipelineSpec =
            pipeline(&[task("a", &[], AllSuccess), task("b", &["a"], AllSuccess), task("c", &["b"], AllSuccess)]);
        let p = graphed(&TASKS);
        let instances =
            [instance("a", TiState::Failed), instance("b", TiState::UpstreamFailed), instance("c", TiState::Running)];
        let below_a = p.relatives(&[0], false, true);
        assert_eq!(clearable(&p, &below_a, &instances, Only::Any), ["a", "b"], "c is running");
        assert_eq!(clearable(&p, &below_a, &instances, Only::Failed), ["a", "b"]);
        assert_eq!(clearable(&p, &[2, 0, 0], &instances, Only::Any), ["a"], "in task order, once");
        assert_eq!(clearable(&p, &below_a, &instances, Only::Running), Vec::<&str>::new());
        let done = [instance("a", TiState::Success), instance("b", TiState::Failed), instance("c", TiState::Skipped)];
        assert_eq!(clearable(&p, &below_a, &done, Only::Failed), ["b"]);
        assert_eq!(clearable(&p, &below_a, &done, Only::Any), ["a", "b", "c"]);
    }
}
