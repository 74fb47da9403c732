//! `pools:`, `pgbouncer:` and `redis:`.

use super::*;

pub(super) const POOL_KEYS: &[&str] = &["name", "slots", "description"];

pub(super) const PGBOUNCER_KEYS: &[&str] =
    &["pool_mode", "listen_port", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size"];

pub(super) const REDIS_KEYS: &[&str] = &["maxmemory", "maxmemory_policy", "broker_db", "rate_limit_db"];

pub const POOL_MODES: &[&str] = &["session", "transaction", "statement"];

pub const EVICTION_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

impl Lowerer<'_> {
    pub(super) fn pool(&mut self, node: &Node) -> Option<Pool> {
        let f = self.fields(node, "a pool", POOL_KEYS)?;
        let name = self.required(&f, "name", "a pool", "add `name: my_pool`")?;
        let w = format!("pool `{}`", name.value);
        let Some(slots) =
            f.value("slots").and_then(|n| self.integer::<u32>(n, &format!("`slots` of {w}"), 0, 1_000_000))
        else {
            if f.value("slots").is_none() {
                self.missing(&f, "slots", &w, "add `slots: 4`, the number of task slots");
            }
            return None;
        };
        let description = self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default();
        Some(Pool { name, slots, description })
    }

    pub(super) fn pgbouncer(&mut self, node: Option<&Node>) -> PgBouncer {
        let f = self.sub_fields(node, "`pgbouncer`", PGBOUNCER_KEYS, Span::default());
        let w = "`pgbouncer`";
        let pool_mode = self.string_or(&f, "pool_mode", w, "transaction");
        self.one_of(&pool_mode, POOL_MODES, "pool_mode");
        PgBouncer {
            pool_mode,
            listen_port: self.int_or(&f, "listen_port", w, (1, 65535), 6432u16),
            max_client_conn: self.int_or(&f, "max_client_conn", w, (1, 1_000_000), 1000u32),
            default_pool_size: self.int_or(&f, "default_pool_size", w, (1, 10_000), 25u32),
            min_pool_size: self.int_or(&f, "min_pool_size", w, (0, 10_000), 10u32),
            reserve_pool_size: self.int_or(&f, "reserve_pool_size", w, (0, 10_000), 5u32),
        }
    }

    pub(super) fn redis(&mut self, node: Option<&Node>) -> Redis {
        let f = self.sub_fields(node, "`redis`", REDIS_KEYS, Span::default());
        let w = "`redis`";
        let maxmemory = self.string_or(&f, "maxmemory", w, "512mb");
        if parse_memory(&maxmemory.value).is_none() {
            self.error(
                "invalid-size",
                maxmemory.span,
                format!("`maxmemory` is not a size: `{}`", maxmemory.value),
                Some("write bytes or a size like `512mb`, `2gb`".into()),
            );
        }
        let maxmemory_policy = self.string_or(&f, "maxmemory_policy", w, "noeviction");
        self.one_of(&maxmemory_policy, EVICTION_POLICIES, "maxmemory_policy");
        Redis {
            maxmemory,
            maxmemory_policy,
            broker_db: self.int_or(&f, "broker_db", w, (0, 15), 1u8),
            rate_limit_db: self.int_or(&f, "rate_limit_db", w, (0, 15), 2u8),
        }
    }

    pub(super) fn one_of(&mut self, value: &Sp<String>, allowed: &[&str], key: &str) {
        if !allowed.contains(&value.value.as_str()) {
            let hint = suggestion(&value.value, allowed.iter().copied())
                .unwrap_or_else(|| format!("one of: {}", allowed.join(", ")));
            self.error("invalid-value", value.span, format!("`{key}` cannot be `{}`", value.value), Some(hint));
        }
    }
}

/// `512mb`, `2gb`, `1024` -> bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1024,
        "m" | "mb" => 1024 * 1024,
        "g" | "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}
