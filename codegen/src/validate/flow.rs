//! Control flow a task declares besides its dependencies: `branch` (which direct
//! downstream tasks run) and `sensor` (waiting for something outside).

use super::*;

/// The task kinds that can name a branch: a Rust body or a Python function returns it, a
/// shell command prints it.
const BRANCHING_KINDS: &[&str] = &["rust", "shell", "python"];

impl Validator<'_> {
    /// A sensor pokes at least every second, can poke twice before it times out, and only a
    /// shell sensor has an exit code for "not yet", distinct from its skip code.
    pub(super) fn sensor(&mut self, t: &Task) {
        let Some(sensor) = &t.sensor else { return };
        let w = format!("the sensor of task `{}`", t.id.value);
        if sensor.poke_interval_secs.value == 0 {
            self.push(
                Diagnostic::error(
                    "invalid-value",
                    sensor.poke_interval_secs.span,
                    format!("{w} pokes without a pause"),
                )
                .with_hint("give `poke_interval` of at least 1s, e.g. `poke_interval: 30s`"),
            );
        } else if sensor.timeout_secs.value < sensor.poke_interval_secs.value {
            self.push(
                Diagnostic::warning(
                    "sensor-timeout",
                    sensor.timeout_secs.span,
                    format!(
                        "{w} times out after {}s, before its second poke ({}s after the first)",
                        sensor.timeout_secs.value, sensor.poke_interval_secs.value
                    ),
                )
                .with_hint("raise `timeout` or lower `poke_interval`"),
            );
        }
        match &t.kind {
            TaskKind::Shell { skip_exit_code, .. } if *skip_exit_code == Some(sensor.exit_code.value) => self.push(
                Diagnostic::error(
                    "exit-code-clash",
                    sensor.exit_code.span,
                    format!(
                        "{w} says \"not yet\" with exit code {}, which is also its `skip_exit_code`",
                        sensor.exit_code.value
                    ),
                )
                .with_hint("give one of the two another code"),
            ),
            TaskKind::Shell { .. } => {}
            _ if sensor.exit_code.is_explicit() => self.push(
                Diagnostic::error(
                    "exit-code-not-shell",
                    sensor.exit_code.span,
                    format!("{w} sets `exit_code`, which only a shell sensor has"),
                )
                .with_hint(not_ready_hint(&t.kind)),
            ),
            _ => {}
        }
    }

    /// `branch:` names direct downstream tasks, each once, of a kind that can choose.
    pub(super) fn branch(&mut self, p: &Pipeline, t: &Task) {
        let Some(first) = t.branch.first() else { return };
        let w = format!("task `{}`", t.id.value);
        if !BRANCHING_KINDS.contains(&t.kind.name()) {
            self.push(
                Diagnostic::error(
                    "branch-kind",
                    first.span,
                    format!("{w} is {} task, which cannot choose a branch", crate::diag::with_article(t.kind.name())),
                )
                .with_hint("make the choice in a rust, shell or python task placed between it and the targets"),
            );
            return;
        }
        if let Some(output) = t.outputs.iter().find(|o| o.name.value == outputs::BRANCH) {
            self.push(
                Diagnostic::error(
                    "branch-output",
                    output.name.span,
                    format!("{w} declares an output `branch`, which a branch task has already (its choice)"),
                )
                .with_hint("rename the output"),
            );
        }
        let downstream: Vec<&str> = p
            .tasks
            .iter()
            .filter(|d| d.depends_on.iter().any(|u| u.value == t.id.value))
            .map(|d| d.id.value.as_str())
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for target in &t.branch {
            if seen.contains(&target.value.as_str()) {
                self.push(
                    Diagnostic::error(
                        "duplicate-id",
                        target.span,
                        format!("`branch` of {w} names `{}` twice", target.value),
                    )
                    .with_hint("remove one of the two"),
                );
                continue;
            }
            seen.push(&target.value);
            if p.task(&target.value).is_none() {
                let hint = suggestion(&target.value, downstream.iter().copied())
                    .unwrap_or_else(|| "name tasks of this pipeline that list this task in their `depends_on`".into());
                self.push(
                    Diagnostic::error(
                        "unknown-task",
                        target.span,
                        format!("`branch` of {w} names unknown task `{}`", target.value),
                    )
                    .with_hint(hint),
                );
            } else if !downstream.contains(&target.value.as_str()) {
                self.push(
                    Diagnostic::error(
                        "branch-not-downstream",
                        target.span,
                        format!("`branch` of {w} names `{}`, which is not directly downstream of it", target.value),
                    )
                    .with_hint(format!("add `{}` to the `depends_on` of `{}`", t.id.value, target.value)),
                );
            }
        }
    }
}

/// How a sensor of this kind says "not yet", for a hint.
fn not_ready_hint(kind: &TaskKind) -> &'static str {
    match kind {
        TaskKind::Rust { .. } => "a Rust sensor returns `Err(TaskError::not_ready(..))`; remove `exit_code`",
        TaskKind::Http(_) => {
            "an http sensor is not ready while the status is outside `expect_status`; remove `exit_code`"
        }
        TaskKind::Sql { .. } => {
            "an sql sensor is not ready while it returns no rows or a false first value; remove `exit_code`"
        }
        TaskKind::Python { .. } => "a Python sensor raises `sluice_context.NotReady`; remove `exit_code`",
        TaskKind::Shell { .. } => "remove `exit_code`",
    }
}
