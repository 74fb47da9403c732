//! One pipeline as a whole: its timezone, schedule, task graph (cycles, reachability) and
//! whether each task can run at all (feasibility).

use super::*;

impl Validator<'_> {
    pub(super) fn pipeline(&mut self, p: &Pipeline) {
        let w = format!("pipeline `{}`", p.id.value);
        let tz = self.timezone(p);
        self.schedule(p, tz);
        if p.catchup.value && p.start_date.is_none() && matches!(p.schedule.value, Schedule::Cron(_)) {
            self.push(
                Diagnostic::error(
                    "catchup-without-start-date",
                    p.catchup.span,
                    format!("{w} has `catchup: true` but no `start_date`"),
                )
                .with_hint(
                    "catch-up needs to know where to start: add `start_date: 2024-01-01`, or set `catchup: false`",
                ),
            );
        }
        if let (Some(start), Some(end)) = (&p.start_date, &p.end_date)
            && end.value < start.value
        {
            self.push(Diagnostic::error(
                "invalid-date",
                end.span,
                format!("`end_date` of {w} is before its `start_date`"),
            ));
        }
        let parallelism = self.config.deployment.executor.parallelism.value;
        if p.max_active_tasks.value > parallelism {
            self.push(
                Diagnostic::warning(
                    "unreachable-limit",
                    p.max_active_tasks.span,
                    format!(
                        "`max_active_tasks: {}` of {w} can never be reached: `parallelism` is {parallelism}",
                        p.max_active_tasks.value
                    ),
                )
                .with_hint("lower it, or raise `deployment.executor.parallelism`"),
            );
        }
        if p.schedule.value == Schedule::Once && p.max_active_runs.value > 1 && p.max_active_runs.is_explicit() {
            self.push(Diagnostic::warning(
                "unreachable-limit",
                p.max_active_runs.span,
                format!(
                    "`max_active_runs: {}` of {w} can never be reached: an `@once` pipeline has one scheduled run",
                    p.max_active_runs.value
                ),
            ));
        }
        self.graph(p);
        self.notification_targets(&p.on_failure, &format!("`on_failure` of {w}"), &p.email);
        self.notification_targets(&p.on_success, &format!("`on_success` of {w}"), &p.email);
        for t in &p.tasks {
            self.task(p, t);
            self.branch(p, t);
            self.sensor(t);
        }
        self.feasibility(p);
    }

    pub(super) fn timezone(&mut self, p: &Pipeline) -> Option<chrono_tz::Tz> {
        match p.timezone.value.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
                let hint = suggestion(&p.timezone.value, names)
                    .unwrap_or_else(|| "use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`".into());
                self.push(
                    Diagnostic::error(
                        "unknown-timezone",
                        p.timezone.span,
                        format!("unknown timezone `{}`", p.timezone.value),
                    )
                    .with_hint(hint),
                );
                None
            }
        }
    }

    pub(super) fn schedule(&mut self, p: &Pipeline, tz: Option<chrono_tz::Tz>) {
        let Schedule::Cron(expr) = &p.schedule.value else { return };
        let span = p.schedule.span;
        if expr.starts_with('@') {
            if !Schedule::PRESETS.iter().any(|(name, _)| name == expr) {
                let names = Schedule::PRESETS.iter().map(|(n, _)| *n).chain(["@once"]);
                let hint = suggestion(expr, names.clone())
                    .unwrap_or_else(|| format!("presets: {}", names.collect::<Vec<_>>().join(", ")));
                self.push(
                    Diagnostic::error("invalid-cron", span, format!("unknown schedule preset `{expr}`"))
                        .with_hint(hint),
                );
                return;
            }
        } else if let Err(problem) = crate::schedule::check_fields(expr) {
            let inner = self.inner_span(span, problem.offset, problem.len);
            self.push(Diagnostic::error("invalid-cron", inner, format!("invalid cron `{expr}`: {}", problem.message)).with_hint(
                "cron has 5 fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7, 0 and 7 = Sunday)",
            ));
            return;
        }
        let cron = match crate::schedule::parse(&p.schedule.value) {
            Ok(cron) => cron,
            Err(message) => {
                self.push(Diagnostic::error("invalid-cron", span, format!("invalid cron `{expr}`: {message}")));
                return;
            }
        };
        if let (true, Some(start), Some(tz)) = (p.catchup.value, &p.start_date, tz) {
            let runs = crate::schedule::count_runs_until_now(&cron, &start.value, tz, CATCHUP_WARN_RUNS + 1);
            if runs > CATCHUP_WARN_RUNS {
                self.push(
                    Diagnostic::warning(
                        "catchup-backlog",
                        p.catchup.span,
                        format!(
                            "pipeline `{}` will create more than {CATCHUP_WARN_RUNS} runs on its first start (catch-up from {} on `{expr}`)",
                            p.id.value, start.value
                        ),
                    )
                    .with_hint("move `start_date` closer, or set `catchup: false` and backfill on purpose"),
                );
            }
        }
    }

    /// Points inside a scalar when it is on one line or a literal block (`|`), where each
    /// line of the value is a line of the file; otherwise at the whole scalar.
    pub(super) fn inner_span(&self, span: Span, offset: usize, len: usize) -> Span {
        let source = self.file.text.get(span.offset..).unwrap_or("");
        if self.starts_literal_block(span) {
            return inner_span_of_block(span, source, offset, len);
        }
        let quote = usize::from(source.starts_with('"') || source.starts_with('\''));
        let line_end = source.find('\n').unwrap_or(source.len());
        if quote + offset + len > line_end {
            return span;
        }
        let prefix = source.get(..quote + offset).unwrap_or("");
        span.narrow(quote + offset, len.max(1), u32::try_from(prefix.chars().count()).unwrap_or(0))
    }

    /// Whether `span` is the content of a literal block scalar: the line before it ends
    /// with `|` (or `|-`, `|+`), and only the block's indentation precedes it on its line.
    fn starts_literal_block(&self, span: Span) -> bool {
        let before = self.file.text.get(..span.offset).unwrap_or("");
        let Some(line_start) = before.rfind('\n') else { return false };
        if !before[line_start + 1..].chars().all(|c| c == ' ') {
            return false;
        }
        let previous = before[..line_start].lines().next_back().unwrap_or("");
        let code = previous.split(" #").next().unwrap_or(previous).trim_end();
        code.ends_with('|') || code.ends_with("|-") || code.ends_with("|+")
    }

    pub(super) fn graph(&mut self, p: &Pipeline) {
        let ids: BTreeSet<&str> = p.tasks.iter().map(|t| t.id.value.as_str()).collect();
        for t in &p.tasks {
            let mut seen = BTreeSet::new();
            for dep in &t.depends_on {
                if dep.value == t.id.value {
                    self.push(Diagnostic::error("cycle", dep.span, format!("task `{}` depends on itself", t.id.value)));
                } else if !ids.contains(dep.value.as_str()) {
                    let renamed = p.tasks.iter().find(|o| o.renamed_from.iter().any(|r| r.value == dep.value));
                    let hint = match renamed {
                        Some(o) => Some(format!("`{}` was renamed to `{}`", dep.value, o.id.value)),
                        None => suggestion(&dep.value, ids.iter().copied()),
                    };
                    let mut d = Diagnostic::error(
                        "unknown-task",
                        dep.span,
                        format!(
                            "task `{}` depends on `{}`, which is not a task of pipeline `{}`",
                            t.id.value, dep.value, p.id.value
                        ),
                    );
                    d.hint = hint.or_else(|| {
                        Some(format!("tasks of this pipeline: {}", ids.iter().copied().collect::<Vec<_>>().join(", ")))
                    });
                    self.push(d);
                } else if !seen.insert(dep.value.as_str()) {
                    self.push(Diagnostic::warning(
                        "duplicate-dependency",
                        dep.span,
                        format!("`{}` is listed twice", dep.value),
                    ));
                }
            }
        }
        self.has_cycle = false;
        if let Some(cycle) = find_cycle(p) {
            self.has_cycle = true;
            let first = p.task(cycle[0]).map_or(p.id.span, |t| t.id.span);
            let path = cycle.iter().chain(std::iter::once(&cycle[0])).copied().collect::<Vec<_>>().join(" -> ");
            self.push(
                Diagnostic::error("cycle", first, format!("pipeline `{}` has a dependency cycle: {path}", p.id.value))
                    .with_hint("remove one `depends_on` entry along the cycle"),
            );
        }
    }

    /// Tasks that can never run (see [`crate::feasibility`]); the pool errors are the causes.
    pub(super) fn feasibility(&mut self, p: &Pipeline) {
        if self.has_cycle {
            return; // the cycle is the error to fix first; propagation around it is noise
        }
        let config = self.config;
        let pool_too_small = |id: &str| {
            p.task(id).is_some_and(|t| {
                config.pool_slots(&t.pool.value).is_some_and(|size| t.pool_slots.value > size || size == 0)
            })
        };
        for never in crate::feasibility::never_running(p, pool_too_small) {
            let Some(task) = p.task(never.task) else { continue };
            let span = never
                .upstream
                .and_then(|up| task.depends_on.iter().find(|d| d.value == up))
                .map_or(task.id.span, |d| d.span);
            self.push(
                Diagnostic::warning(
                    "never-runs",
                    span,
                    format!("task `{}` can never run: {}", never.task, never.reason),
                )
                .with_hint("fix the upstream task, or change this task's `trigger_rule`"),
            );
        }
    }
}

/// One dependency cycle, as task ids in order, if the pipeline has any.
fn find_cycle(p: &Pipeline) -> Option<Vec<&str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let index: HashMap<&str, usize> = p.tasks.iter().enumerate().map(|(i, t)| (t.id.value.as_str(), i)).collect();
    let edges: Vec<Vec<usize>> = p
        .tasks
        .iter()
        .map(|t| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.value.as_str()).copied())
                .filter(|&u| p.tasks[u].id.value != t.id.value)
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::New; p.tasks.len()];
    for start in 0..p.tasks.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS so a long chain cannot overflow the stack.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some((node, next)) = stack.last().copied() {
            if let Some(&up) = edges[node].get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks[up] {
                    Mark::New => {
                        marks[up] = Mark::Active;
                        stack.push((up, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|(n, _)| *n == up).unwrap_or(0);
                        // The stack runs downstream -> upstream; print in dependency order.
                        let mut cycle: Vec<&str> =
                            stack[from..].iter().map(|(n, _)| p.tasks[*n].id.value.as_str()).collect();
                        cycle.reverse();
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// [`Validator::inner_span`] in a literal block whose content starts at `span` (behind the
/// block's indentation): the value's line `k` is the file's line `span.line + k`.
fn inner_span_of_block(span: Span, source: &str, offset: usize, len: usize) -> Span {
    let indent = usize::try_from(span.col.saturating_sub(1)).unwrap_or(0);
    let mut value_offset = 0;
    let mut file_offset = span.offset;
    for (k, line) in source.split_inclusive('\n').enumerate() {
        // The first line's indentation is before `span`; the others carry it.
        let content = if k == 0 { line } else { line.get(indent.min(line.len())..).unwrap_or("") };
        let skipped = line.len() - content.len();
        let content_len = content.trim_end_matches('\n').len();
        if offset <= value_offset + content_len {
            let col_in_line = offset - value_offset;
            if col_in_line + len > content_len {
                return span;
            }
            let prefix = content.get(..col_in_line).unwrap_or("");
            return Span {
                line: span.line + u32::try_from(k).unwrap_or(0),
                col: u32::try_from(indent + prefix.chars().count() + 1).unwrap_or(1),
                offset: file_offset + skipped + col_in_line,
                len: len.max(1),
            };
        }
        value_offset += content_len + 1;
        file_offset += line.len();
    }
    span
}
