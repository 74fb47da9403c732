//! The graph facts the compiler emits (topological order, depth, downstream tasks,
//! effective priority weight) against plain reference implementations, on random DAGs
//! compiled from YAML. The weight reference is the runtime's former `effective_priority`,
//! which walked `depends_on` for every task: the compiled weights must equal it exactly.

use proptest::prelude::*;
use sluice_codegen::graph;

const HEAD: &str = r#"deployment:
  project: facts
  image: sluice/facts
  executor:
    queues: [default]
  admin: {username_env: SLUICE_ADMIN_USERNAME, password_env: SLUICE_ADMIN_PASSWORD, email_env: SLUICE_ADMIN_EMAIL}
  fernet_key_env: SLUICE_FERNET_KEY
  secret_key_env: SLUICE_SECRET_KEY
  metadata_db: {name: sluice, user: sluice, password: "${POSTGRES_PASSWORD}"}
pipelines:
  - id: random
    tasks:
"#;

/// A random DAG: task `i` (declared `i`-th) depends on `deps[i]` and weighs `weights[i]`.
#[derive(Debug, Clone)]
struct Dag {
    deps: Vec<Vec<usize>>,
    weights: Vec<i32>,
}

fn id(i: usize) -> String {
    format!("t{i:02}")
}

impl Dag {
    fn yaml(&self) -> String {
        let mut text = HEAD.to_string();
        for (i, (deps, weight)) in self.deps.iter().zip(&self.weights).enumerate() {
            let deps: Vec<String> = deps.iter().map(|&d| id(d)).collect();
            text += &format!(
                "      - {{id: {}, shell: \"true\", priority_weight: {weight}, depends_on: [{}]}}\n",
                id(i),
                deps.join(", ")
            );
        }
        text
    }
}

/// Up to 40 tasks. Edges only go from earlier to later in a hidden order, so the graph is
/// acyclic; tasks are declared in another order, so the file is not upstream-first. Some
/// dependencies are listed twice (a warning, not an error).
fn dag() -> impl Strategy<Value = Dag> {
    (1usize..40)
        .prop_flat_map(|n| {
            let hidden = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            let picks =
                proptest::collection::vec(proptest::collection::vec((any::<prop::sample::Index>(), 0u8..10), 0..5), n);
            let weights = proptest::collection::vec(-1_000_000i32..=1_000_000, n);
            (hidden, picks, weights)
        })
        .prop_map(|(hidden, picks, weights)| {
            // hidden[k] is the task at position k of the hidden order.
            let deps = (0..hidden.len())
                .map(|k| {
                    let mut deps = Vec::new();
                    if k > 0 {
                        for (pick, repeat) in &picks[k] {
                            let up = hidden[pick.index(k)];
                            deps.push(up);
                            if *repeat == 0 {
                                deps.push(up);
                            }
                        }
                    }
                    (hidden[k], deps)
                })
                .fold(vec![Vec::new(); hidden.len()], |mut all, (task, deps)| {
                    all[task] = deps;
                    all
                });
            Dag { deps, weights }
        })
}

/// The runtime's former `descendants`: breadth first over "tasks that list this one".
fn descendants(dag: &Dag, task: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut frontier = vec![task];
    while let Some(id) = frontier.pop() {
        for (t, deps) in dag.deps.iter().enumerate() {
            if deps.contains(&id) && !out.contains(&t) {
                out.push(t);
                frontier.insert(0, t);
            }
        }
    }
    out
}

/// The runtime's former `effective_priority`.
fn effective_priority(dag: &Dag, task: usize) -> i64 {
    let below: i64 = descendants(dag, task).iter().map(|&t| i64::from(dag.weights[t])).sum();
    i64::from(dag.weights[task]) + below
}

/// The web UI's former layout depth: relax every task `n` times.
fn depths(dag: &Dag) -> Vec<u32> {
    let mut depth: Vec<Option<u32>> = vec![None; dag.deps.len()];
    for _ in 0..dag.deps.len() {
        for (t, deps) in dag.deps.iter().enumerate() {
            depth[t] = Some(deps.iter().map(|&u| depth[u].map_or(0, |d| d + 1)).max().unwrap_or(0));
        }
    }
    depth.into_iter().map(Option::unwrap_or_default).collect()
}

/// Repeatedly the first declared task whose upstreams are all placed.
fn first_ready_order(dag: &Dag) -> Vec<u32> {
    let mut placed = vec![false; dag.deps.len()];
    let mut order = Vec::new();
    while let Some(t) = (0..dag.deps.len()).find(|&t| !placed[t] && dag.deps[t].iter().all(|&u| placed[u])) {
        placed[t] = true;
        order.push(t as u32);
    }
    order
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compiled_facts_match_the_reference(dag in dag()) {
        let compiled = sluice_codegen::compile_str("random.yaml", &dag.yaml())
            .unwrap_or_else(|d| panic!("a DAG compiles: {d:?}\n{}", dag.yaml()));
        let p = &compiled.config.pipelines[0];
        let upstream = graph::upstream(p);
        let facts = graph::facts(p, &upstream).expect("a DAG has facts");
        let n = dag.deps.len();

        let declared: Vec<Vec<u32>> = dag.deps.iter().map(|d| d.iter().map(|&u| u as u32).collect()).collect();
        prop_assert_eq!(&upstream, &declared, "upstream runs parallel to depends_on");
        prop_assert_eq!(&facts.topo_order, &first_ready_order(&dag));
        prop_assert_eq!(&facts.depth, &depths(&dag));
        for t in 0..n {
            let below: Vec<u32> = (0..n).filter(|&d| dag.deps[d].contains(&t)).map(|d| d as u32).collect();
            prop_assert_eq!(&facts.downstream[t], &below, "downstream of {}", id(t));
            prop_assert_eq!(facts.effective_weight[t], effective_priority(&dag, t), "weight of {}", id(t));
        }
    }
}

#[test]
fn a_file_written_upstream_first_keeps_its_order() {
    let dag = Dag { deps: vec![vec![], vec![0], vec![0], vec![1, 2]], weights: vec![1, 2, 3, 4] };
    let compiled = sluice_codegen::compile_str("diamond.yaml", &dag.yaml()).expect("compiles");
    let p = &compiled.config.pipelines[0];
    let facts = graph::facts(p, &graph::upstream(p)).expect("facts");
    assert_eq!(facts.topo_order, [0, 1, 2, 3]);
    assert_eq!(facts.depth, [0, 1, 1, 2]);
    assert_eq!(facts.effective_weight, [10, 6, 7, 4], "the join is counted once under the root");
}

#[test]
fn the_emitted_tables_carry_the_facts() {
    let dag = Dag { deps: vec![vec![], vec![0], vec![0], vec![1, 2]], weights: vec![1, 2, 3, 4] };
    let compiled = sluice_codegen::compile_str("diamond.yaml", &dag.yaml()).expect("compiles");
    let file = sluice_codegen::source::SourceFile::new("diamond.yaml", dag.yaml());
    let rust = sluice_codegen::emit::rust::render(&compiled.config, &file, &compiled.warnings);
    let compact: String = rust.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "topo_order: &[0, 1, 2, 3]",
        "depends_on: &[\"t01\", \"t02\"], upstream: &[1, 2], downstream: &[], depth: 2u32, effective_priority_weight: 4i64,",
        "depends_on: &[], upstream: &[], downstream: &[1, 2], depth: 0u32, effective_priority_weight: 10i64,",
    ] {
        assert!(compact.contains(expected), "`{expected}` in:\n{rust}");
    }
}
