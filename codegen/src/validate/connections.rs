//! Connections, pools and queues: what each declares, checked against the others.

use super::*;

impl Validator<'_> {
    pub(super) fn connections(&mut self) {
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

    pub(super) fn pools_and_queues(&mut self) {
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
}
