//! Templates: every name a template uses is one a run fills (or a declared param, variable
//! or connection), and values that would land unquoted are warned about.

use super::*;

/// minijinja's own globals, which its analysis reports as undeclared.
pub(super) const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop", "self"];

impl Validator<'_> {
    pub(super) fn template(&mut self, p: &Pipeline, t: &Task, template: &Sp<String>) {
        let env = minijinja::Environment::new();
        let parsed = match env.template_from_str(&template.value) {
            Ok(parsed) => parsed,
            Err(e) => {
                let span = e.range().map_or(template.span, |r| self.inner_span(template.span, r.start, r.len()));
                let detail = e.detail().unwrap_or("syntax error").to_string();
                self.push(
                    Diagnostic::error(
                        "template-syntax",
                        span,
                        format!("template of task `{}` does not parse: {detail}", t.id.value),
                    )
                    .with_hint("templates use Jinja syntax: `{{ ds }}`, `{{ params.name }}`, `{% if ... %}`"),
                );
                return;
            }
        };
        let mut names: Vec<String> = parsed.undeclared_variables(true).into_iter().collect();
        names.sort();
        for name in names {
            let mut parts = name.split('.');
            let root = parts.next().unwrap_or("");
            let span =
                template.value.find(&name).map_or(template.span, |at| self.inner_span(template.span, at, name.len()));
            if TEMPLATE_GLOBALS.contains(&root) {
                continue;
            }
            if !TEMPLATE_VARIABLES.contains(&root) {
                let hint = suggestion(root, TEMPLATE_VARIABLES.iter().copied())
                    .unwrap_or_else(|| format!("available: {}", TEMPLATE_VARIABLES.join(", ")));
                self.push(
                    Diagnostic::error(
                        "unknown-template-variable",
                        span,
                        format!("template of task `{}` uses unknown variable `{root}`", t.id.value),
                    )
                    .with_hint(hint),
                );
                continue;
            }
            let Some(member) = parts.next() else { continue };
            match root {
                "params" if !p.params.iter().any(|q| q.name.value == member) => {
                    let hint = suggestion(member, p.params.iter().map(|q| q.name.value.as_str()))
                        .unwrap_or_else(|| format!("declare it under `params:` of pipeline `{}`", p.id.value));
                    self.push(
                        Diagnostic::error(
                            "unknown-param",
                            span,
                            format!("template of task `{}` uses unknown param `{member}`", t.id.value),
                        )
                        .with_hint(hint),
                    );
                }
                "conn" => {
                    let id = Sp::new(member.to_string(), span);
                    if self.connection_ref(&id, &format!("template of task `{}`", t.id.value)).is_some()
                        && !t.connections.iter().any(|c| c.value == member)
                        && t.kind.step_connection().is_none_or(|c| c.value != member)
                    {
                        self.push(
                            Diagnostic::error(
                                "undeclared-connection",
                                span,
                                format!(
                                    "template of task `{}` uses connection `{member}`, which the task does not declare",
                                    t.id.value
                                ),
                            )
                            .with_hint(format!("add `{member}` to the task's `connections:`")),
                        );
                    }
                }
                "upstream" => self.upstream_output(p, t, member, parts.next(), span),
                "dag_run" => self.member_of("dag_run", DAG_RUN_ATTRIBUTES, t, member, span),
                "macros" => self.member_of("macros", MACROS, t, member, span),
                _ => {}
            }
        }
        self.date_arithmetic(t, template);
    }

    /// `upstream.<task>.<output>`: a direct upstream task, and one of its outputs.
    fn upstream_output(&mut self, p: &Pipeline, t: &Task, task: &str, output: Option<&str>, span: Span) {
        let w = format!("template of task `{}`", t.id.value);
        let Some(up) = p.task(task) else {
            let hint = suggestion(task, t.depends_on.iter().map(|d| d.value.as_str()))
                .unwrap_or_else(|| "name a task this one lists in `depends_on`".into());
            self.push(
                Diagnostic::error("unknown-task", span, format!("{w} reads `upstream.{task}`, which is not a task"))
                    .with_hint(hint),
            );
            return;
        };
        if !t.depends_on.iter().any(|d| d.value == task) {
            self.push(
                Diagnostic::error(
                    "not-upstream",
                    span,
                    format!("{w} reads `upstream.{task}`, which is not a direct upstream of it"),
                )
                .with_hint(format!("add `{task}` to the `depends_on` of `{}`", t.id.value)),
            );
            return;
        }
        let Some(output) = output else { return };
        let names: Vec<String> = up
            .outputs
            .iter()
            .map(|o| o.name.value.clone())
            .chain(undeclared_outputs(up).into_iter().map(|(n, _)| n.to_string()))
            .collect();
        if !names.iter().any(|n| n == output) {
            let hint = suggestion(output, names.iter().map(String::as_str)).unwrap_or_else(|| {
                if names.is_empty() {
                    format!("`{task}` has no outputs; declare them under its `outputs:`")
                } else {
                    format!("`{task}` outputs {}", names.join(", "))
                }
            });
            self.push(
                Diagnostic::error(
                    "unknown-output",
                    span,
                    format!("{w} reads `upstream.{task}.{output}`, but `{task}` has no output `{output}`"),
                )
                .with_hint(hint),
            );
        }
    }

    /// `dag_run.<attribute>`, `macros.<name>`: one of the names the runtime fills.
    fn member_of(&mut self, root: &str, members: &[&str], t: &Task, member: &str, span: Span) {
        if members.contains(&member) {
            return;
        }
        let hint = suggestion(member, members.iter().copied())
            .unwrap_or_else(|| format!("`{root}` has {}", members.join(", ")));
        self.push(
            Diagnostic::error(
                "unknown-template-variable",
                span,
                format!("template of task `{}` uses `{root}.{member}`, which does not exist", t.id.value),
            )
            .with_hint(hint),
        );
    }

    /// Dates do not add with `+` in templates (Jinja has no operator for them): Airflow's
    /// `logical_date + macros.timedelta(days=1)` is written with pendulum's `add`.
    fn date_arithmetic(&mut self, t: &Task, template: &Sp<String>) {
        let text = &template.value;
        for (at, _) in text.match_indices("macros.timedelta") {
            let before = text[..at].trim_end();
            if !(before.ends_with('+') || before.ends_with('-')) {
                continue;
            }
            let operator = before.len() - 1;
            self.push(
                Diagnostic::error(
                    "date-arithmetic",
                    self.inner_span(template.span, operator, at + "macros.timedelta".len() - operator),
                    format!("template of task `{}` adds a timedelta with `+` or `-`, which templates cannot do", t.id.value),
                )
                .with_hint(
                    "write `logical_date.add(days=1)` / `.subtract(hours=2)`, or `macros.ds_add(ds, 1)` for a `ds` string",
                ),
            );
        }
    }

    /// `| safe` in a shell command or SQL statement writes a value unquoted, so the value
    /// can change what runs: allowed, but said.
    pub(super) fn raw_values(&mut self, t: &Task, template: &Sp<String>) {
        let text = &template.value;
        for (at, _) in text.match_indices("safe") {
            let before = text[..at].trim_end();
            let after = text[at + 4..].chars().next();
            let is_filter = before.ends_with('|') && !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !is_filter {
                continue;
            }
            let what = if matches!(t.kind, TaskKind::Sql { .. }) { "statement" } else { "command" };
            self.push(
                Diagnostic::warning(
                    "unquoted-template-value",
                    self.inner_span(template.span, at, 4),
                    format!(
                        "`| safe` writes a value into the {what} of task `{}` unquoted: the value can change what runs",
                        t.id.value
                    ),
                )
                .with_hint(
                    "drop `| safe` to quote the value; pass data through `env:` (shell) instead of building code from it",
                ),
            );
        }
    }
}
