//! Graph facts of a pipeline — topological order, depths, downstream tasks, effective
//! priority weights — derived once here, at compile time, and emitted as data
//! ([`crate::emit::rust`]) so the runtime never walks `depends_on` to find them. What
//! each fact means, and the one derivation the compiler and hand-written specs share, is
//! [`sluice_contract::graph`].

use crate::model::Pipeline;
use std::collections::HashMap;

pub use sluice_contract::graph::Facts;

/// For each task, the index of each of its `depends_on` entries, in the same order
/// (repeats kept: the emitted `upstream` runs parallel to `depends_on`). Ids that are not
/// tasks of the pipeline are left out; validation has reported them.
pub fn upstream(p: &Pipeline) -> Vec<Vec<u32>> {
    let index: HashMap<&str, u32> =
        p.tasks.iter().enumerate().map(|(i, t)| (t.id.value.as_str(), u32::try_from(i).unwrap_or(u32::MAX))).collect();
    p.tasks.iter().map(|t| t.depends_on.iter().filter_map(|d| index.get(d.value.as_str()).copied()).collect()).collect()
}

/// The facts of pipeline `p` given its [`upstream`] lists; `None` for a dependency cycle,
/// which validation rejects before anything is emitted.
pub fn facts(p: &Pipeline, upstream: &[Vec<u32>]) -> Option<Facts> {
    let weights: Vec<i64> = p.tasks.iter().map(|t| i64::from(t.priority_weight)).collect();
    sluice_contract::graph::facts(upstream, &weights)
}
