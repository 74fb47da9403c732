//! Graph facts: what a pipeline's `depends_on` lists imply about its tasks — an order that
//! puts upstreams first, each task's depth, its direct downstream tasks and its effective
//! priority weight.
//!
//! The compiler derives them once, when it emits a pipeline, and writes them into the spec
//! tables ([`PipelineSpec::topo_order`], [`TaskSpec::upstream`], [`TaskSpec::downstream`],
//! [`TaskSpec::depth`], [`TaskSpec::effective_priority_weight`]); the runtime only reads
//! them. Derived at run time from `depends_on` they cost time quadratic in a pipeline's
//! width, on every run created and every graph page drawn. [`PipelineSpec::check_graph`]
//! confirms in (near) linear time that a spec's facts fit its dependencies, for specs the
//! compiler did not write.

use crate::spec::{PipelineSpec, TaskSpec};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The graph facts of one pipeline, by task index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Task indices, every task after all of its upstreams; among the tasks whose upstreams
    /// are all placed, the lowest index comes first.
    pub topo_order: Vec<u32>,
    /// Longest path from a task without upstreams.
    pub depth: Vec<u32>,
    /// The tasks that depend on each task, ascending, each once.
    pub downstream: Vec<Vec<u32>>,
    /// Each task's own weight plus the weights of all tasks below it, each counted once.
    pub effective_weight: Vec<i64>,
}

/// The facts of the graph whose task `t` depends on the tasks `upstream[t]` and weighs
/// `weights[t]` (both indexed alike; indices out of range are ignored, repeats count once).
/// `None` when the dependencies form a cycle: the compiler reports those before it gets
/// here.
pub fn facts(upstream: &[Vec<u32>], weights: &[i64]) -> Option<Facts> {
    let n = weights.len();
    let mut downstream: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (t, ups) in upstream.iter().enumerate().take(n) {
        let t = index(t);
        for &u in ups {
            let Some(list) = downstream.get_mut(u as usize) else { continue };
            // Tasks are visited in ascending order, so a repeat is the last entry.
            if list.last() != Some(&t) {
                list.push(t);
            }
        }
    }
    let topo_order = topo_order(&downstream)?;
    let mut depth = vec![0u32; n];
    for &t in &topo_order {
        let below = depth[t as usize] + 1;
        for &d in &downstream[t as usize] {
            depth[d as usize] = depth[d as usize].max(below);
        }
    }
    let effective_weight = effective_weights(&topo_order, &downstream, weights);
    Some(Facts { topo_order, depth, downstream, effective_weight })
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Kahn's algorithm with the ready tasks in a min-heap, so the order is the same on every
/// build and equals declaration order when the file lists upstreams first.
fn topo_order(downstream: &[Vec<u32>]) -> Option<Vec<u32>> {
    let mut waiting_for = vec![0usize; downstream.len()];
    for d in downstream.iter().flatten() {
        waiting_for[*d as usize] += 1;
    }
    let mut ready: BinaryHeap<Reverse<u32>> =
        (0..downstream.len()).filter(|&t| waiting_for[t] == 0).map(|t| Reverse(index(t))).collect();
    let mut order = Vec::with_capacity(downstream.len());
    while let Some(Reverse(t)) = ready.pop() {
        order.push(t);
        for &d in &downstream[t as usize] {
            waiting_for[d as usize] -= 1;
            if waiting_for[d as usize] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    (order.len() == downstream.len()).then_some(order)
}

/// Descendants are counted a block of tasks at a time: a bit set of the block per task,
/// filled in reverse topological order (a task's descendants in the block are its direct
/// downstream tasks and theirs). Memory stays at `tasks x BLOCK` bits however large the
/// pipeline; time is `(tasks + edges) x tasks / 64` word operations plus one step per
/// (task, descendant) pair.
const BLOCK: usize = 4096;

fn effective_weights(order: &[u32], downstream: &[Vec<u32>], weights: &[i64]) -> Vec<i64> {
    let n = weights.len();
    let mut total = weights.to_vec();
    let words = BLOCK / 64;
    let mut sets = vec![0u64; n * words];
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let used = (end - start).div_ceil(64);
        sets.fill(0);
        for &t in order.iter().rev() {
            let t = t as usize;
            for &d in &downstream[t] {
                let d = d as usize;
                if (start..end).contains(&d) {
                    let bit = d - start;
                    sets[t * words + bit / 64] |= 1 << (bit % 64);
                }
                for w in 0..used {
                    sets[t * words + w] |= sets[d * words + w];
                }
            }
            for w in 0..used {
                let mut bits = sets[t * words + w];
                while bits != 0 {
                    total[t] += weights[start + w * 64 + bits.trailing_zeros() as usize];
                    bits &= bits - 1;
                }
            }
        }
    }
    total
}

impl PipelineSpec {
    /// The tasks `roots` (indices into `tasks`) with, as asked, every task above them
    /// (`upstream`) and every task below them (`downstream`), each once, nearest first
    /// (breadth first from the roots over the compiled `upstream` / `downstream` lists).
    /// What clearing or marking a task "with upstream / downstream" acts on.
    pub fn relatives(&self, roots: &[usize], upstream: bool, downstream: bool) -> Vec<usize> {
        let mut seen = vec![false; self.tasks.len()];
        let mut queue: Vec<usize> = Vec::with_capacity(roots.len());
        for &root in roots {
            if seen.get(root) == Some(&false) {
                seen[root] = true;
                queue.push(root);
            }
        }
        let mut head = 0;
        while let Some(task) = queue.get(head).and_then(|&t| self.tasks.get(t)) {
            head += 1;
            let above = task.upstream.iter().filter(|_| upstream);
            let below = task.downstream.iter().filter(|_| downstream);
            for &next in above.chain(below) {
                let next = next as usize;
                if seen.get(next) == Some(&false) {
                    seen[next] = true;
                    queue.push(next);
                }
            }
        }
        queue
    }

    /// Whether the graph facts fit the tasks' `depends_on`: the order is a topological
    /// order of all tasks, `upstream` names `depends_on`, `downstream` is its inverse,
    /// depths are longest paths and a task with nothing below it weighs its own weight.
    /// (Weights of other tasks would need the descendant sets; the compiler's property
    /// tests hold those to a reference.) The first misfit, as a sentence.
    pub fn check_graph(&self) -> Result<(), String> {
        let n = self.tasks.len();
        let task = |i: u32| self.tasks.get(i as usize).ok_or_else(|| format!("task index {i} is out of range"));
        if self.topo_order.len() != n {
            return Err(format!("`topo_order` has {} entries for {n} tasks", self.topo_order.len()));
        }
        let mut position = vec![usize::MAX; n];
        for (at, &t) in self.topo_order.iter().enumerate() {
            task(t)?;
            if position[t as usize] != usize::MAX {
                return Err(format!("`topo_order` lists task `{}` twice", self.tasks[t as usize].id));
            }
            position[t as usize] = at;
        }
        let mut edges = 0usize;
        let mut distinct: Vec<u32> = Vec::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let misfit = |what: &str| Err(format!("task `{}`: {what}", t.id));
            if t.upstream.len() != t.depends_on.len() {
                return misfit("`upstream` does not match `depends_on`");
            }
            let mut depth = 0;
            for (&u, id) in t.upstream.iter().zip(t.depends_on) {
                let up: &TaskSpec = task(u)?;
                if up.id != *id {
                    return misfit(&format!("`upstream` points at `{}` for `{id}`", up.id));
                }
                if position[u as usize] >= position[i] {
                    return misfit(&format!("`topo_order` puts it before its upstream `{id}`"));
                }
                if up.downstream.binary_search(&index(i)).is_err() {
                    return misfit(&format!("missing from the `downstream` of `{id}`"));
                }
                depth = depth.max(up.depth + 1);
            }
            if t.depth != depth {
                return misfit(&format!("`depth` is {}, the longest path from a root is {depth}", t.depth));
            }
            if !t.downstream.windows(2).all(|w| w[0] < w[1]) {
                return misfit("`downstream` is not ascending without repeats");
            }
            if t.downstream.is_empty() && t.effective_priority_weight != i64::from(t.priority_weight) {
                return misfit("with nothing downstream, `effective_priority_weight` must be `priority_weight`");
            }
            distinct.clear();
            distinct.extend_from_slice(t.upstream);
            distinct.sort_unstable();
            distinct.dedup();
            edges += distinct.len();
        }
        // Every upstream edge is in a `downstream` list (above), and the lists are free of
        // repeats: equal counts leave no room for an edge `depends_on` lacks.
        let listed: usize = self.tasks.iter().map(|t| t.downstream.len()).sum();
        if listed != edges {
            return Err(format!("`downstream` lists {listed} edges, `depends_on` has {edges}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(lists: &[&[u32]]) -> Vec<Vec<u32>> {
        lists.iter().map(|l| l.to_vec()).collect()
    }

    #[test]
    fn a_diamond_counts_the_shared_descendant_once() {
        // 3 -> 1 -> 0 and 3 -> 2 -> 0, declared join first; 4 stands alone.
        let f = facts(&ups(&[&[1, 2], &[3], &[3], &[], &[]]), &[1, 10, 100, 1000, 7]).expect("acyclic");
        assert_eq!(f.topo_order, [3, 1, 2, 0, 4]);
        assert_eq!(f.depth, [2, 1, 1, 0, 0]);
        assert_eq!(f.downstream, [vec![], vec![0], vec![0], vec![1, 2], vec![]]);
        assert_eq!(f.effective_weight, [1, 11, 101, 1111, 7]);
    }

    #[test]
    fn repeats_count_once_and_cycles_have_no_facts() {
        let f = facts(&ups(&[&[], &[0, 0]]), &[1, 1]).expect("acyclic");
        assert_eq!(f.downstream, [vec![1], vec![]]);
        assert_eq!(f.effective_weight, [2, 1]);
        assert_eq!(facts(&ups(&[&[1], &[0]]), &[1, 1]), None);
        assert_eq!(facts(&ups(&[&[0]]), &[1]), None);
    }

    #[test]
    fn blocks_of_descendants_add_up_past_one_block() {
        // A chain longer than a block: task i has every later task below it.
        let n = BLOCK + 70;
        let upstream: Vec<Vec<u32>> = (0..n).map(|i| if i == 0 { vec![] } else { vec![index(i - 1)] }).collect();
        let f = facts(&upstream, &vec![1; n]).expect("acyclic");
        assert!(f.effective_weight.iter().enumerate().all(|(i, &w)| w == (n - i) as i64));
        assert_eq!(f.depth.last().copied(), Some(index(n - 1)));
    }
}
