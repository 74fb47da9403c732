//! A pipeline's `tasks:`: each task, its kind (rust, shell, http, sql) and what each kind
//! reads.

use super::*;

pub const TASK_KEYS: &[&str] = &[
    "id",
    "description",
    "rust",
    "shell",
    "env",
    "skip_exit_code",
    "http",
    "sql",
    "python",
    "depends_on",
    "trigger_rule",
    "pool",
    "pool_slots",
    "priority_weight",
    "queue",
    "connections",
    "outputs",
    "produces",
    "sensor",
    "branch",
    "renamed_from",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "email_on_failure",
    "email_on_retry",
    "email",
    "on_failure",
    "on_retry",
    "on_success",
    "sla",
];

pub(super) const TASK_KINDS: &[&str] = &["rust", "shell", "http", "sql", "python"];

/// Environment names a shell task's `env:` may not set: Sluice sets them from the run.
pub(super) const RESERVED_ENV_PREFIXES: &[&str] = &["SLUICE_", "AIRFLOW_CTX_", "AIRFLOW_CONN_"];

pub(super) const HTTP_KEYS: &[&str] =
    &["conn", "method", "endpoint", "body", "headers", "expect_status", "skip_status"];

/// Keys only a shell task has, each with the code of its misuse.
pub(super) const SHELL_ONLY_KEYS: &[(&str, &str)] =
    &[("env", "env-not-shell"), ("skip_exit_code", "skip-exit-code-not-shell")];

pub(super) const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

pub(super) const SQL_KEYS: &[&str] = &["conn", "statement"];

impl Lowerer<'_> {
    pub(super) fn task(&mut self, node: &Node, index: usize, pipeline: &str, defaults: &TaskDefaults) -> Option<Task> {
        let what = peek_id(node, "id")
            .map_or(format!("task #{} of {pipeline}", index + 1), |id| format!("task `{id}` of {pipeline}"));
        let f = self.fields(node, &what, TASK_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_task`")?;
        let w = format!("task `{}` of {pipeline}", id.value);
        let kind = self.task_kind(&f, &w);
        let outputs = match f.value("outputs") {
            Some(node)
                if kind.as_ref().is_some_and(|k| {
                    !matches!(k, TaskKind::Rust { .. } | TaskKind::Shell { .. } | TaskKind::Python { .. })
                }) =>
            {
                let kind_name = kind.as_ref().map_or("", TaskKind::name);
                let fixed: Vec<String> = kind
                    .as_ref()
                    .map(implicit_outputs)
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, t)| format!("`{n}: {t}`"))
                    .collect();
                self.error(
                    "outputs-not-allowed",
                    node.span,
                    format!(
                        "{w} is {} task; only rust, shell and python tasks declare `outputs`",
                        with_article(kind_name)
                    ),
                    Some(format!("{} task always outputs {}", with_article(kind_name), fixed.join(" and "))),
                );
                Vec::new()
            }
            Some(node) => self.outputs(node, &w),
            None => Vec::new(),
        };
        let trigger_rule = match self.opt_string(&f, "trigger_rule", &w) {
            Some(t) => match TriggerRule::parse(&t.value) {
                Some(rule) => Sp::new(rule, t.span),
                None => {
                    let names = TriggerRule::ALL.iter().map(|(n, _)| *n);
                    let hint = suggestion(&t.value, names.clone())
                        .unwrap_or_else(|| format!("trigger rules: {}", names.collect::<Vec<_>>().join(", ")));
                    self.error(
                        "unknown-trigger-rule",
                        t.span,
                        format!("unknown trigger rule `{}`", t.value),
                        Some(hint),
                    );
                    Sp::new(TriggerRule::AllSuccess, t.span)
                }
            },
            None => Sp::new(TriggerRule::AllSuccess, f.key_span("trigger_rule")),
        };
        let pool = self.opt_string(&f, "pool", &w).or_else(|| defaults.pool.clone());
        let queue = self.opt_string(&f, "queue", &w).or_else(|| defaults.queue.clone());
        let priority_weight = match f.value("priority_weight") {
            Some(n) => {
                self.integer::<i32>(n, &format!("`priority_weight` of {w}"), -1_000_000, 1_000_000).map(|v| v.value)
            }
            None => defaults.priority_weight.as_ref().map(|v| v.value),
        };
        Some(Task {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            kind: kind?,
            depends_on: self.string_list(&f, "depends_on", &w),
            trigger_rule,
            settings: self.settings(&f, &w, &defaults.settings),
            pool: pool.unwrap_or_else(|| Sp::new(DEFAULT_POOL.into(), f.key_span("pool"))),
            pool_slots: self.int_or(&f, "pool_slots", &w, (1, 1_000_000), 1u32),
            priority_weight: priority_weight.unwrap_or(1),
            queue: queue.unwrap_or_else(|| Sp::new(DEFAULT_QUEUE.into(), f.key_span("queue"))),
            connections: self.string_list(&f, "connections", &w),
            outputs,
            produces: self.string_list(&f, "produces", &w),
            sensor: f.value("sensor").and_then(|n| self.sensor(n, &w)),
            branch: self.string_list(&f, "branch", &w),
            renamed_from: self.string_list(&f, "renamed_from", &w),
            id,
        })
    }

    pub(super) fn task_kind(&mut self, f: &Fields<'_>, what: &str) -> Option<TaskKind> {
        let given: Vec<&str> = TASK_KINDS.iter().copied().filter(|k| f.get(k).is_some()).collect();
        match given.as_slice() {
            [] => {
                self.missing(
                    f,
                    "rust`, `shell`, `http`, `sql` or `python",
                    what,
                    "give the task one kind, e.g. `shell: echo hello`",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.error(
                    "several-kinds",
                    f.key_span(second),
                    format!("{what} has more than one kind: {}", given.join(", ")),
                    Some("a task is exactly one of rust, shell, http, sql or python; split it into two tasks".into()),
                );
                return None;
            }
        }
        let node = f.get(given[0])?;
        for (key, code) in SHELL_ONLY_KEYS.iter().filter(|_| given[0] != "shell") {
            if f.get(key).is_some() {
                self.error(
                    code,
                    f.key_span(key),
                    format!("{what} sets `{key}`, which only shell tasks have"),
                    Some(format!("remove `{key}:`, or make the task a `shell:` task")),
                );
            }
        }
        match given[0] {
            "rust" => self.string(node, &format!("`rust` of {what}")).map(|path| TaskKind::Rust { path }),
            "shell" => {
                let env = f.get("env").map(|n| self.shell_env(n, what)).unwrap_or_default();
                let skip_exit_code = match f.get("skip_exit_code") {
                    None => Some(sluice_contract::defaults::SKIP_EXIT_CODE),
                    Some(n) if n.value == Value::Null => None,
                    Some(n) => self.integer::<i32>(n, &format!("`skip_exit_code` of {what}"), 1, 255).map(|c| c.value),
                };
                self.string(node, &format!("`shell` of {what}")).map(|command| TaskKind::Shell {
                    command,
                    env,
                    skip_exit_code,
                })
            }
            "http" => self.http_step(node, what).map(TaskKind::Http),
            "python" => self.python_step(node, what),
            _ => {
                let sw = format!("`sql` of {what}");
                let s = self.fields(node, &sw, SQL_KEYS)?;
                let conn = self.required(&s, "conn", &sw, "add `conn:` naming a postgres or sqlite connection");
                let statement = self.required(&s, "statement", &sw, "add `statement: SELECT 1`");
                Some(TaskKind::Sql { conn: conn?, statement: statement? })
            }
        }
    }

    pub(super) fn http_step(&mut self, node: &Node, what: &str) -> Option<HttpStep> {
        let hw = format!("`http` of {what}");
        let h = self.fields(node, &hw, HTTP_KEYS)?;
        let conn = self.required(&h, "conn", &hw, "add `conn:` naming an http connection");
        let endpoint = self.required(&h, "endpoint", &hw, "add `endpoint: /path`");
        let method = self.string_or(&h, "method", &hw, "GET");
        let method = Sp::new(method.value.to_uppercase(), method.span);
        self.one_of(&method, HTTP_METHODS, "method");
        let body = h.value("body").and_then(|n| match &n.value {
            Value::Map(_) | Value::Seq(_) => Some(Sp::new(to_json(n).to_string(), n.span)),
            _ => self.string(n, &format!("`body` of {hw}")),
        });
        let headers = match h.value("headers") {
            Some(node) => self.headers(node, &hw),
            None => BTreeMap::new(),
        };
        let expect_status = match h.value("expect_status") {
            None => vec![200],
            Some(n) => self.statuses(n, "`expect_status`"),
        };
        let skip_status = h.value("skip_status").map(|n| self.statuses(n, "`skip_status`")).unwrap_or_default();
        Some(HttpStep { conn: conn?, method, endpoint: endpoint?, body, headers, expect_status, skip_status })
    }

    /// `python: path/to/module.py:function`.
    fn python_step(&mut self, node: &Node, what: &str) -> Option<TaskKind> {
        let text = self.string(node, &format!("`python` of {what}"))?;
        let Some((module, function)) = text.value.rsplit_once(':') else {
            self.error(
                "invalid-python-task",
                text.span,
                format!("`python` of {what} names no function: `{}`", text.value),
                Some("write the module's file and the function, e.g. `tasks/report.py:write_report`".into()),
            );
            return None;
        };
        let function_at = module.len() + 1;
        let function_span = text.span.narrow(function_at, function.len(), u32::try_from(function_at).unwrap_or(0));
        Some(TaskKind::Python {
            module: Sp::new(module.to_string(), text.span),
            function: Sp::new(function.to_string(), function_span),
        })
    }

    /// One HTTP status or a list of them.
    fn statuses(&mut self, node: &Node, what: &str) -> Vec<u16> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| self.integer::<u16>(i, &format!("a status of {what}"), 100, 599).map(|s| s.value))
                .collect(),
            _ => self.integer::<u16>(node, what, 100, 599).map(|s| s.value).into_iter().collect(),
        }
    }

    /// `env:` of a shell task: variable names, and values that are templates. Names that
    /// Sluice sets itself are reserved; a secret must come from a connection or a variable.
    pub(super) fn shell_env(&mut self, node: &Node, what: &str) -> BTreeMap<String, Sp<String>> {
        let mut env = BTreeMap::new();
        let ew = format!("`env` of {what}");
        for (name, key, value) in self.fields_any(node, &ew).unwrap_or_default() {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    "invalid-env-name",
                    key.span,
                    format!("`{name}` in {ew} is not an environment variable name"),
                    Some("use letters, digits and `_`, not starting with a digit, e.g. `LEAGUE`".into()),
                );
                continue;
            }
            let upper = name.to_ascii_uppercase();
            if let Some(prefix) = RESERVED_ENV_PREFIXES.iter().find(|p| upper.starts_with(**p)) {
                self.error(
                    "reserved-env-name",
                    key.span,
                    format!("`{name}` in {ew} starts with `{prefix}`, which Sluice sets itself"),
                    Some("choose another name; run facts and connections are already in the environment".into()),
                );
                continue;
            }
            let Some(v) = self.string(value, &format!("`{name}` of {ew}")) else { continue };
            if is_secret_key(name) && !v.value.contains("{{") && !v.value.is_empty() {
                self.error(
                    "literal-secret",
                    v.span,
                    format!("`{name}` in {ew} is a literal secret"),
                    Some("take it from a connection or a variable, e.g. `{{ conn.backend_api.password }}`".into()),
                );
                continue;
            }
            env.insert(name.to_string(), v);
        }
        env
    }

    /// Header values are templates; credentials must come from a connection, not the YAML.
    pub(super) fn headers(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        for (name, _, value) in self.fields_any(node, &format!("`headers` of {what}")).unwrap_or_default() {
            let Some(v) = self.string(value, &format!("header `{name}`")) else { continue };
            let lower = name.to_ascii_lowercase();
            let sensitive = lower == "authorization" || is_secret_key(&lower) || lower.ends_with("-key");
            if sensitive && !v.value.contains("{{") {
                self.error(
                    "literal-secret",
                    v.span,
                    format!("header `{name}` of {what} is a literal secret"),
                    Some("take it from the connection instead, e.g. `Bearer {{ conn.backend_api.password }}`".into()),
                );
                continue;
            }
            headers.insert(name.to_string(), v.value);
        }
        headers
    }

    pub(super) fn outputs(&mut self, node: &Node, what: &str) -> Vec<Output> {
        let Some(entries) = self.fields_any(node, &format!("`outputs` of {what}")) else { return Vec::new() };
        let mut outputs = Vec::new();
        for (name, key, value) in entries {
            let ow = format!("output `{name}` of {what}");
            let Some(ty_text) = self.string(value, &format!("the type of {ow}")) else { continue };
            if let Some(ty) = self.value_type(&ty_text, &ow) {
                outputs.push(Output { name: Sp::new(name.to_string(), key.span), ty });
            }
        }
        outputs
    }
}
