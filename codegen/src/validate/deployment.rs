//! The deployment as a whole: executor sizes against the pools, PgBouncer and Redis
//! settings that would break the services.

use super::*;

impl Validator<'_> {
    pub(super) fn deployment(&mut self) {
        let d = &self.config.deployment;
        let r = &self.config.redis;
        if r.maxmemory_policy.value != "noeviction" {
            self.push(
                Diagnostic::warning(
                    "evicting-broker",
                    r.maxmemory_policy.span,
                    format!("Redis carries the task broker (db {}), and `{}` evicts keys under memory pressure: queued tasks would be dropped", r.broker_db.value, r.maxmemory_policy.value),
                )
                .with_hint("use `maxmemory_policy: noeviction` (the store re-queues lost work, but only after a delay)"),
            );
        }
        if r.broker_db.value == r.rate_limit_db.value {
            self.push(
                Diagnostic::error(
                    "invalid-value",
                    r.rate_limit_db.span,
                    format!("`rate_limit_db` and `broker_db` are both db {}", r.broker_db.value),
                )
                .with_hint("give the rate limiter its own database, e.g. `rate_limit_db: 2`"),
            );
        }
        let b = &self.config.pgbouncer;
        match b.pool_mode.value.as_str() {
            "statement" => self.push(
                Diagnostic::error("pgbouncer-mode", b.pool_mode.span, "`pool_mode: statement` cannot run Sluice: the store needs multi-statement transactions")
                    .with_hint("use `pool_mode: transaction`"),
            ),
            "session" => self.push(
                Diagnostic::warning("pgbouncer-mode", b.pool_mode.span, format!("with `pool_mode: session` each client holds a server connection: at most {} Sluice connections work at once, the rest wait", b.default_pool_size.value))
                    .with_hint("use `pool_mode: transaction`"),
            ),
            _ => {}
        }
        if b.min_pool_size.value > b.default_pool_size.value {
            self.push(Diagnostic::warning(
                "pgbouncer-pool",
                b.min_pool_size.span,
                format!(
                    "`min_pool_size` ({}) is larger than `default_pool_size` ({}): it can never be reached",
                    b.min_pool_size.value, b.default_pool_size.value
                ),
            ));
        }
        let e = &d.executor;
        let processes = e.worker_replicas.value + 3; // workers + scheduler + webserver + init
        let clients = processes * CLIENTS_PER_PROCESS;
        if clients > b.max_client_conn.value {
            self.push(
                Diagnostic::warning("pgbouncer-clients", b.max_client_conn.span, format!("`max_client_conn: {}` is below the ~{clients} client connections of {processes} Sluice processes", b.max_client_conn.value))
                    .with_hint("raise `max_client_conn`"),
            );
        }
        let capacity = e.worker_concurrency.value.saturating_mul(e.worker_replicas.value);
        // Only when written: the defaults (32 = Airflow's) assume workers are scaled at deploy.
        if capacity < e.parallelism.value && e.worker_replicas.value > 0 && e.parallelism.is_explicit() {
            self.push(
                Diagnostic::warning(
                    "unreachable-limit",
                    e.parallelism.span,
                    format!(
                        "`parallelism: {}` can never be reached by {} worker(s) x {} slots = {capacity}",
                        e.parallelism.value, e.worker_replicas.value, e.worker_concurrency.value
                    ),
                )
                .with_hint("raise `worker_replicas` or `worker_concurrency`, or lower `parallelism` (scaling workers at deploy time also raises capacity)"),
            );
        }
        let used: BTreeSet<&str> =
            self.config.pipelines.iter().flat_map(|p| &p.tasks).map(|t| t.queue.value.as_str()).collect();
        for q in &e.queues {
            if q.value != DEFAULT_QUEUE && !used.contains(q.value.as_str()) {
                self.push(Diagnostic::warning(
                    "unused-queue",
                    q.span,
                    format!("no task is routed to queue `{}`", q.value),
                ));
            }
        }
    }
}
