//! Validate: checks over the whole model that need more than one key at a time —
//! references, graphs, schedules, templates, feasibility. Every finding is collected.

use crate::diag::{Diagnostic, Diagnostics, suggestion};
use crate::model::*;
use crate::source::{SourceFile, Span};
use sluice_contract::ident::is_identifier;
use sluice_contract::template::TEMPLATE_VARIABLES;
use std::collections::{BTreeSet, HashMap};

mod deployment;
mod templates;

/// Above this many runs, a `catchup: true` pipeline's first start gets a warning.
pub const CATCHUP_WARN_RUNS: usize = 100;
/// Rough client connections one Sluice process opens to PgBouncer (its pool size).
const CLIENTS_PER_PROCESS: u32 = 10;

pub fn validate(config: &Config, file: &SourceFile, diags: &mut Diagnostics) {
    let mut v = Validator { config, file, diags, has_cycle: false };
    v.ids();
    v.connections();
    v.pools_and_queues();
    for pipeline in &config.pipelines {
        v.pipeline(pipeline);
    }
    v.deployment();
}

struct Validator<'a> {
    config: &'a Config,
    file: &'a SourceFile,
    diags: &'a mut Diagnostics,
    has_cycle: bool,
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Ids become Rust names in the generated code: check them once, everywhere.
    fn identifier(&mut self, id: &Sp<String>, what: &str) {
        if !is_identifier(&id.value) {
            let fixed: String = id
                .value
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
                .collect();
            self.push(
                Diagnostic::error("invalid-id", id.span, format!("{what} id `{}` is not a valid id", id.value))
                    .with_hint(format!(
                        "ids are lowercase letters, digits and `_`, starting with a letter, e.g. `{fixed}`"
                    )),
            );
        } else if syn::parse_str::<syn::Ident>(&id.value).is_err() {
            self.push(
                Diagnostic::error(
                    "invalid-id",
                    id.span,
                    format!("{what} id `{}` is a reserved word in Rust", id.value),
                )
                .with_hint(format!("rename it, e.g. `{}_task`", id.value)),
            );
        }
    }

    fn duplicates<'s>(&mut self, ids: impl IntoIterator<Item = &'s Sp<String>>, what: &str, scope: &str) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for id in ids {
            if let Some(first) = seen.get(id.value.as_str()) {
                let line = first.line;
                self.push(
                    Diagnostic::error("duplicate-id", id.span, format!("duplicate {what} id `{}`{scope}", id.value))
                        .with_hint(format!("the first `{}` is on line {line}; ids must be unique", id.value)),
                );
            } else {
                seen.insert(&id.value, id.span);
            }
        }
    }

    fn ids(&mut self) {
        let config = self.config;
        self.duplicates(config.pipelines.iter().map(|p| &p.id), "pipeline", "");
        self.duplicates(config.connections.iter().map(|c| &c.id), "connection", "");
        self.duplicates(config.pools.iter().map(|p| &p.name), "pool", "");
        self.duplicates(config.deployment.executor.queues.iter(), "queue", "");
        for p in &config.pipelines {
            self.identifier(&p.id, "pipeline");
            let scope = format!(" in pipeline `{}`", p.id.value);
            self.duplicates(p.tasks.iter().map(|t| &t.id), "task", &scope);
            self.duplicates(p.params.iter().map(|p| &p.name), "param", &scope);
            for param in &p.params {
                self.identifier(&param.name, "param");
            }
            for t in &p.tasks {
                self.identifier(&t.id, "task");
                self.duplicates(t.outputs.iter().map(|o| &o.name), "output", &format!(" in task `{}`", t.id.value));
                for o in &t.outputs {
                    self.identifier(&o.name, "output");
                }
            }
        }
        for c in &config.connections {
            self.identifier(&c.id, "connection");
        }
    }

    fn connections(&mut self) {
        for c in &self.config.connections {
            let needs_host = !matches!(c.conn_type.value, ConnType::Sqlite | ConnType::File);
            if needs_host && c.host.is_none() {
                self.push(
                    Diagnostic::error("missing-key", c.id.span, format!("connection `{}` has no `host`", c.id.value))
                        .with_hint("add `host:` (a compose service name or a DNS name)"),
                );
            }
            if c.conn_type.value == ConnType::Sqlite && c.database.is_none() {
                self.push(
                    Diagnostic::error(
                        "missing-key",
                        c.id.span,
                        format!("connection `{}` has no `database`", c.id.value),
                    )
                    .with_hint("a sqlite connection names its file: `database: /data/app.sqlite`"),
                );
            }
            if c.conn_type.value == ConnType::File && c.database.is_none() {
                self.push(
                    Diagnostic::error(
                        "missing-key",
                        c.id.span,
                        format!("connection `{}` has no `database`", c.id.value),
                    )
                    .with_hint("a file connection names its directory: `database: /data/feed`"),
                );
            }
        }
    }

    fn pools_and_queues(&mut self) {
        for pool in &self.config.pools {
            if pool.slots.value == 0 {
                self.push(
                    Diagnostic::warning(
                        "pool-empty",
                        pool.slots.span,
                        format!("pool `{}` has no slots", pool.name.value),
                    )
                    .with_hint("no task in it can run until slots are added at run time"),
                );
            }
        }
        for q in &self.config.deployment.executor.queues {
            self.identifier(q, "queue");
        }
    }

    fn pipeline(&mut self, p: &Pipeline) {
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
        }
        self.feasibility(p);
    }

    fn timezone(&mut self, p: &Pipeline) -> Option<chrono_tz::Tz> {
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

    fn schedule(&mut self, p: &Pipeline, tz: Option<chrono_tz::Tz>) {
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

    /// Points inside a scalar when it is on one line; otherwise at the whole scalar.
    fn inner_span(&self, span: Span, offset: usize, len: usize) -> Span {
        let source = self.file.text.get(span.offset..).unwrap_or("");
        let quote = usize::from(source.starts_with('"') || source.starts_with('\''));
        let line_end = source.find('\n').unwrap_or(source.len());
        if quote + offset + len > line_end {
            return span;
        }
        let prefix = source.get(..quote + offset).unwrap_or("");
        span.narrow(quote + offset, len.max(1), u32::try_from(prefix.chars().count()).unwrap_or(0))
    }

    fn graph(&mut self, p: &Pipeline) {
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

    fn connection_ref(&mut self, id: &Sp<String>, what: &str) -> Option<&Connection> {
        let found = self.config.connection(&id.value);
        if found.is_none() {
            let hint = suggestion(&id.value, self.config.connections.iter().map(|c| c.id.value.as_str()))
                .unwrap_or_else(|| "declare it under `connections:`".into());
            self.push(
                Diagnostic::error(
                    "unknown-connection",
                    id.span,
                    format!("{what} names unknown connection `{}`", id.value),
                )
                .with_hint(hint),
            );
        }
        found
    }

    fn task(&mut self, p: &Pipeline, t: &Task) {
        let w = format!("task `{}`", t.id.value);
        for c in &t.connections {
            self.connection_ref(c, &w);
        }
        match &t.kind {
            TaskKind::Rust { path } => self.rust_path(path),
            TaskKind::Http(http) => {
                if let Some(c) = self.connection_ref(&http.conn, &w)
                    && c.conn_type.value != ConnType::Http
                {
                    let ty = c.conn_type.value.name();
                    self.push(
                        Diagnostic::error(
                            "wrong-connection-type",
                            http.conn.span,
                            format!("{w} is an http step but connection `{}` is of type {ty}", http.conn.value),
                        )
                        .with_hint("use a connection of `type: http`"),
                    );
                }
                if http.expect_status.is_empty() {
                    self.push(
                        Diagnostic::error("missing-key", http.endpoint.span, format!("{w} expects no status"))
                            .with_hint("give `expect_status: 200`"),
                    );
                }
            }
            TaskKind::Sql { conn, .. } => {
                if let Some(c) = self.connection_ref(conn, &w)
                    && !c.conn_type.value.is_sql()
                {
                    let ty = c.conn_type.value.name();
                    self.push(
                        Diagnostic::error(
                            "wrong-connection-type",
                            conn.span,
                            format!("{w} is a sql step but connection `{}` is of type {ty}", conn.value),
                        )
                        .with_hint("use a connection of `type: postgres` or `type: sqlite`"),
                    );
                }
            }
            TaskKind::Shell { .. } => {}
        }
        for template in t.kind.templates() {
            self.template(p, t, template);
        }
        if let Some(command) = t.kind.quoted_template() {
            self.raw_values(t, command);
        }
        match self.config.pool_slots(&t.pool.value) {
            None => {
                let mut names: Vec<&str> = self.config.pools.iter().map(|p| p.name.value.as_str()).collect();
                names.push(DEFAULT_POOL);
                let hint = suggestion(&t.pool.value, names.iter().copied())
                    .unwrap_or_else(|| format!("pools: {}; declare more under `pools:`", names.join(", ")));
                self.push(
                    Diagnostic::error("unknown-pool", t.pool.span, format!("{w} uses unknown pool `{}`", t.pool.value))
                        .with_hint(hint),
                );
            }
            Some(size) if t.pool_slots.value > size => {
                self.push(
                    Diagnostic::error(
                        "infeasible-pool-slots",
                        t.pool_slots.span,
                        format!(
                            "{w} needs {} slots of pool `{}`, which has only {size}: it can never run",
                            t.pool_slots.value, t.pool.value
                        ),
                    )
                    .with_hint(format!("lower `pool_slots` to at most {size}, or enlarge the pool")),
                );
            }
            Some(_) => {}
        }
        let queues = &self.config.deployment.executor.queues;
        if !queues.iter().any(|q| q.value == t.queue.value) {
            let hint = suggestion(&t.queue.value, queues.iter().map(|q| q.value.as_str()))
                .unwrap_or_else(|| "add it to `deployment.executor.queues` so a worker listens on it".into());
            self.push(
                Diagnostic::error(
                    "unknown-queue",
                    t.queue.span,
                    format!("{w} is routed to unknown queue `{}`", t.queue.value),
                )
                .with_hint(hint),
            );
        }
        let s = &t.settings;
        for (key, targets) in [("on_failure", &s.on_failure), ("on_retry", &s.on_retry), ("on_success", &s.on_success)]
        {
            self.notification_targets(targets, &format!("`{key}` of {w}"), &s.email);
        }
        self.sla(p, t);
        if let Some(max) = t.settings.max_retry_delay_secs
            && max < t.settings.retry_delay_secs
        {
            self.push(Diagnostic::warning(
                "retry-delay-cap",
                t.id.span,
                format!(
                    "{w}: `max_retry_delay` ({max}s) is shorter than `retry_delay` ({}s)",
                    t.settings.retry_delay_secs
                ),
            ));
        }
    }

    /// Each target is a declared http (webhook), smtp (email to `email`) or file connection.
    fn notification_targets(&mut self, targets: &[Sp<String>], what: &str, email: &[String]) {
        for target in targets {
            let Some(c) = self.connection_ref(target, what) else { continue };
            let ty = c.conn_type.value;
            match ty {
                ConnType::Http | ConnType::File => {}
                ConnType::Smtp if email.is_empty() => self.push(
                    Diagnostic::error(
                        "no-recipients",
                        target.span,
                        format!("{what} sends email through `{}` but names no recipients", target.value),
                    )
                    .with_hint("add `email: [team@example.com]` to the task or the pipeline's `default_args`"),
                ),
                ConnType::Smtp => {}
                _ => self.push(
                    Diagnostic::error(
                        "wrong-connection-type",
                        target.span,
                        format!("{what} notifies through `{}`, a connection of type {}", target.value, ty.name()),
                    )
                    .with_hint("notify through an http (webhook), smtp (email) or file connection"),
                ),
            }
        }
    }

    fn sla(&mut self, p: &Pipeline, t: &Task) {
        let Some(sla) = &t.settings.sla_secs else { return };
        let w = format!("task `{}`", t.id.value);
        if sla.value == 0 {
            self.push(
                Diagnostic::error("invalid-duration", sla.span, format!("`sla` of {w} is zero"))
                    .with_hint("give how long after the run's scheduled start the task must have succeeded, e.g. `2h`"),
            );
        } else if p.schedule.value == Schedule::Manual {
            self.push(
                Diagnostic::warning(
                    "sla-never-checked",
                    sla.span,
                    format!(
                        "`sla` of {w} is never checked: SLAs apply to scheduled runs and `{}` has no schedule",
                        p.id.value
                    ),
                )
                .with_hint("give the pipeline a `schedule`, or remove the `sla`"),
            );
        }
    }

    fn rust_path(&mut self, path: &Sp<String>) {
        let parsed = syn::parse_str::<syn::Path>(&path.value);
        let problem = match &parsed {
            Err(_) => Some("it is not a Rust path"),
            Ok(p) if p.leading_colon.is_some() || p.segments.first().is_none_or(|s| s.ident != "crate") => {
                Some("it must start with `crate::` (task bodies live in this crate)")
            }
            Ok(p) if p.segments.len() < 2 => Some("it names no function"),
            Ok(p) if p.segments.iter().any(|s| !s.arguments.is_none()) => Some("generic arguments are not allowed"),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            self.push(
                Diagnostic::error(
                    "invalid-rust-path",
                    path.span,
                    format!("malformed Rust path `{}`: {problem}", path.value),
                )
                .with_hint("write the path of an async fn, e.g. `crate::tasks::scraper::scrape_nfl`"),
            );
        }
    }

    /// Tasks that can never run (see [`crate::feasibility`]); the pool errors are the causes.
    fn feasibility(&mut self, p: &Pipeline) {
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
