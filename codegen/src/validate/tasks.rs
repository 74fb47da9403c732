//! One task: its kind and step, the connections it names, its notifications, SLA and Rust
//! path.

use super::*;

impl Validator<'_> {
    pub(super) fn connection_ref(&mut self, id: &Sp<String>, what: &str) -> Option<&Connection> {
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

    pub(super) fn task(&mut self, p: &Pipeline, t: &Task) {
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
            TaskKind::Python { module, function } => self.python_function(module, function),
        }
        for output in &t.outputs {
            if let Some((name, ty)) = implicit_outputs(&t.kind).into_iter().find(|(n, _)| *n == output.name.value) {
                self.push(
                    Diagnostic::error(
                        "reserved-output",
                        output.name.span,
                        format!("{w} declares output `{name}`, which every {} task has already ({ty})", t.kind.name()),
                    )
                    .with_hint("choose another name"),
                );
            }
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
    }

    /// Each target is a declared http (webhook), smtp (email to `email`) or file connection.
    pub(super) fn notification_targets(&mut self, targets: &[Sp<String>], what: &str, email: &[String]) {
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

    pub(super) fn sla(&mut self, p: &Pipeline, t: &Task) {
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

    /// The module of a Python task is a `.py` file beside the pipelines file (or below it)
    /// that defines the function at its top level.
    pub(super) fn python_function(&mut self, module: &Sp<String>, function: &Sp<String>) {
        let path = std::path::Path::new(&module.value);
        let plain = module.value.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
        if path.extension().is_none_or(|e| e != "py") || path.is_absolute() || module.value.contains("..") || !plain {
            self.push(
                Diagnostic::error(
                    "invalid-python-task",
                    module.span,
                    format!("`{}` is not a Python module's file below the pipelines file's folder", module.value),
                )
                .with_hint(
                    "write a relative path to a `.py` file of letters, digits, `_`, `-`, `.` and `/`, e.g. \
                     `tasks/report.py:write_report`",
                ),
            );
            return;
        }
        // A text compiled on its own (not read from disk) has no folder to look in.
        let Some(folder) = &self.file.folder else { return };
        let Ok(source) = std::fs::read_to_string(folder.join(path)) else {
            self.push(
                Diagnostic::error("python-module-missing", module.span, format!("no Python module `{}`", module.value))
                    .with_hint(format!("the path is relative to the folder of `{}`", file_name(&self.file.name))),
            );
            return;
        };
        let defined: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("def ").or_else(|| l.strip_prefix("async def ")))
            .filter_map(|l| l.split('(').next())
            .map(str::trim)
            .collect();
        if !defined.contains(&function.value.as_str()) {
            let hint = suggestion(&function.value, defined.iter().copied())
                .unwrap_or_else(|| format!("define `def {}(ctx):` at the top level of the module", function.value));
            self.push(
                Diagnostic::error(
                    "python-function-missing",
                    function.span,
                    format!("module `{}` defines no function `{}` at its top level", module.value, function.value),
                )
                .with_hint(hint),
            );
        }
    }

    pub(super) fn rust_path(&mut self, path: &Sp<String>) {
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
}

/// The last part of a path as written (`pipelines.yaml` of `/srv/mlsp/pipelines.yaml`).
fn file_name(path: &str) -> &str {
    std::path::Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path)
}
