//! Control flow a task declares besides its dependencies: `branch` (which direct
//! downstream tasks run).

use super::*;

/// The task kinds that can name a branch: a Rust body returns it, a shell command prints it.
const BRANCHING_KINDS: &[&str] = &["rust", "shell"];

impl Validator<'_> {
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
                .with_hint("make the choice in a rust or shell task placed between it and the targets"),
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
