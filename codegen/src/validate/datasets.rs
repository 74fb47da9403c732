//! Datasets: each declared once, under a unique URI; every `produces` and
//! `schedule: {datasets}` names one; a dataset nobody produces or nobody waits for is said;
//! pipelines that would start each other through datasets in a loop are an error.

use super::*;

impl Validator<'_> {
    pub(super) fn datasets(&mut self) {
        let config = self.config;
        self.duplicates(config.datasets.iter().map(|d| &d.id), "dataset", "");
        let mut uris: HashMap<&str, u32> = HashMap::new();
        for d in &config.datasets {
            self.identifier(&d.id, "dataset");
            if d.uri.value.trim().is_empty() {
                self.push(
                    Diagnostic::error(
                        "invalid-value",
                        d.uri.span,
                        format!("dataset `{}` has an empty `uri`", d.id.value),
                    )
                    .with_hint("name where the data lives, e.g. `postgres://mlsp/games`"),
                );
            } else if let Some(line) = uris.get(d.uri.value.as_str()) {
                self.push(
                    Diagnostic::error(
                        "duplicate-uri",
                        d.uri.span,
                        format!("dataset `{}` has the URI of the dataset on line {line}", d.id.value),
                    )
                    .with_hint("a URI names one dataset: give each its own, or use one dataset"),
                );
            } else {
                uris.insert(&d.uri.value, d.uri.span.line);
            }
        }
        for p in &config.pipelines {
            if let Schedule::Datasets(ids) = &p.schedule.value {
                for id in ids {
                    self.dataset_ref(id, &format!("`schedule` of pipeline `{}`", p.id.value));
                }
            }
            for t in &p.tasks {
                for id in &t.produces {
                    self.dataset_ref(id, &format!("`produces` of task `{}`", t.id.value));
                }
            }
        }
        for d in &config.datasets {
            let produced = config
                .pipelines
                .iter()
                .flat_map(|p| &p.tasks)
                .any(|t| t.produces.iter().any(|x| x.value == d.id.value));
            let consumed = config.pipelines.iter().any(|p| consumes(p, &d.id.value));
            if !produced {
                self.push(
                    Diagnostic::warning(
                        "dataset-not-produced",
                        d.id.span,
                        format!(
                            "no task produces dataset `{}`: only events sent to the REST API update it",
                            d.id.value
                        ),
                    )
                    .with_hint("add it to the `produces` of the task that writes it"),
                );
            }
            if !consumed {
                self.push(
                    Diagnostic::warning(
                        "dataset-not-consumed",
                        d.id.span,
                        format!("no pipeline is scheduled on dataset `{}`", d.id.value),
                    )
                    .with_hint(format!(
                        "schedule the pipeline that reads it with `schedule: {{datasets: [{}]}}`",
                        d.id.value
                    )),
                );
            }
        }
        self.dataset_cycles();
    }

    fn dataset_ref(&mut self, id: &Sp<String>, what: &str) {
        let datasets = &self.config.datasets;
        if datasets.iter().any(|d| d.id.value == id.value) {
            return;
        }
        let hint = suggestion(&id.value, datasets.iter().map(|d| d.id.value.as_str()))
            .unwrap_or_else(|| "declare it under the top-level `datasets:`".into());
        self.push(
            Diagnostic::error("unknown-dataset", id.span, format!("{what} names unknown dataset `{}`", id.value))
                .with_hint(hint),
        );
    }

    /// Pipeline P starts pipeline Q when a task of P produces a dataset Q is scheduled on;
    /// a loop of such starts would run for ever.
    fn dataset_cycles(&mut self) {
        let pipelines = &self.config.pipelines;
        let starts = |from: &Pipeline| -> Vec<usize> {
            let produced: Vec<&str> = from.tasks.iter().flat_map(|t| &t.produces).map(|d| d.value.as_str()).collect();
            (0..pipelines.len()).filter(|&q| produced.iter().any(|d| consumes(&pipelines[q], d))).collect()
        };
        let edges: Vec<Vec<usize>> = pipelines.iter().map(starts).collect();
        let mut reported = vec![false; pipelines.len()];
        for start in 0..pipelines.len() {
            let Some(cycle) = cycle_from(start, &edges) else { continue };
            if cycle.iter().any(|&i| reported[i]) {
                continue;
            }
            for &i in &cycle {
                reported[i] = true;
            }
            let names: Vec<String> =
                cycle.iter().chain(cycle.first()).map(|&i| format!("`{}`", pipelines[i].id.value)).collect();
            let p = &pipelines[start];
            self.push(
                Diagnostic::error(
                    "dataset-cycle",
                    p.schedule.span,
                    format!("pipelines start each other through datasets in a loop: {}", names.join(" -> ")),
                )
                .with_hint("a pipeline must not be started, directly or through others, by the data it produces"),
            );
        }
    }
}

/// Whether pipeline `p` is scheduled on dataset `id`.
fn consumes(p: &Pipeline, id: &str) -> bool {
    matches!(&p.schedule.value, Schedule::Datasets(ids) if ids.iter().any(|d| d.value == id))
}

/// A loop through `start` in the graph `edges`, as the pipelines in order from `start`.
fn cycle_from(start: usize, edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Depth-first, keeping the path; the graph is as small as the number of pipelines.
    fn walk(at: usize, start: usize, edges: &[Vec<usize>], path: &mut Vec<usize>, seen: &mut Vec<bool>) -> bool {
        for &next in &edges[at] {
            if next == start {
                return true;
            }
            if !seen[next] {
                seen[next] = true;
                path.push(next);
                if walk(next, start, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = vec![false; edges.len()];
    seen[start] = true;
    walk(start, start, edges, &mut path, &mut seen).then_some(path)
}
