//! `pipelines:`: each pipeline, its params, and the settings its tasks inherit from
//! `default_args`.

use super::*;

pub const PIPELINE_KEYS: &[&str] = &[
    "id",
    "description",
    "owner",
    "tags",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "paused_at_creation",
    "params",
    "default_args",
    "on_failure",
    "on_success",
    "tasks",
];

pub(super) const PARAM_KEYS: &[&str] = &["type", "default", "description"];

pub(super) const SETTINGS_KEYS: &[&str] = &[
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

pub(super) const DEFAULT_ARGS_EXTRA_KEYS: &[&str] = &["pool", "queue", "priority_weight"];

impl Lowerer<'_> {
    pub(super) fn pipeline(&mut self, node: &Node, paused_default: bool) -> Option<Pipeline> {
        let what = peek_id(node, "id").map_or("a pipeline".into(), |id| format!("pipeline `{id}`"));
        let f = self.fields(node, &what, PIPELINE_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_pipeline`")?;
        let w = format!("pipeline `{}`", id.value);
        let schedule = match f.get("schedule") {
            None => Sp::new(Schedule::Manual, f.key_span("schedule")),
            Some(n) if n.value == Value::Null => Sp::new(Schedule::Manual, n.span),
            Some(n) if matches!(n.value, Value::Map(_)) => {
                self.dataset_schedule(n, &w).unwrap_or_else(|| Sp::new(Schedule::Manual, n.span))
            }
            Some(n) => match self.string(n, &format!("`schedule` of {w}")) {
                Some(s) if s.value == "@once" => Sp::new(Schedule::Once, s.span),
                Some(s) if s.value == "None" || s.value == "none" => Sp::new(Schedule::Manual, s.span),
                Some(s) => Sp::new(Schedule::Cron(s.value), s.span),
                None => Sp::new(Schedule::Manual, n.span),
            },
        };
        let defaults = self.default_args(f.value("default_args"), &w);
        let tasks = self.list(f.value("tasks"), &format!("`tasks` of {w}"), |l, n, i| l.task(n, i, &w, &defaults));
        match f.value("tasks").map(|n| &n.value) {
            None => self.missing(&f, "tasks", &w, "add `tasks:` with at least one task"),
            Some(Value::Seq(items)) if items.is_empty() => {
                self.diags.push(Diagnostic::warning("empty-pipeline", id.span, format!("{w} has no tasks")));
            }
            Some(_) => {}
        }
        Some(Pipeline {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            owner: self.opt_string(&f, "owner", &w).map_or_else(|| "sluice".into(), |s| s.value),
            tags: self.string_list(&f, "tags", &w).into_iter().map(|s| s.value).collect(),
            schedule,
            timezone: self.string_or(&f, "timezone", &w, "UTC"),
            start_date: self.date(&f, "start_date", &w),
            end_date: self.date(&f, "end_date", &w),
            catchup: self.bool_or(&f, "catchup", &w, false),
            max_active_runs: self.int_or(&f, "max_active_runs", &w, (1, 10_000), 16u32),
            max_active_tasks: self.int_or(&f, "max_active_tasks", &w, (1, 100_000), 16u32),
            paused_at_creation: self.bool_or(&f, "paused_at_creation", &w, paused_default).value,
            params: self.params(f.value("params"), &w),
            on_failure: self.string_list(&f, "on_failure", &w),
            on_success: self.string_list(&f, "on_success", &w),
            email: defaults.settings.email.clone(),
            tasks,
            id,
        })
    }

    pub(super) fn date(&mut self, f: &Fields<'_>, key: &str, what: &str) -> Option<Sp<String>> {
        let text = self.opt_string(f, key, what)?;
        match normalize_date(&text.value) {
            Some(iso) => Some(Sp::new(iso, text.span)),
            None => {
                self.error(
                    "invalid-date",
                    text.span,
                    format!("`{key}` of {what} is not a date: `{}`", text.value),
                    Some("write `2024-01-01` or `2024-01-01T06:00:00` (local time in the pipeline's timezone)".into()),
                );
                None
            }
        }
    }

    pub(super) fn params(&mut self, node: Option<&Node>, what: &str) -> Vec<Param> {
        let Some(node) = node else { return Vec::new() };
        let Some(f) = self.fields_any(node, &format!("`params` of {what}")) else { return Vec::new() };
        let mut params = Vec::new();
        for (name, key, value) in f {
            let pw = format!("param `{name}` of {what}");
            let is_spec =
                matches!(&value.value, Value::Map(e) if e.iter().any(|(k, _)| k.value == Value::Str("type".into())));
            let param = if is_spec {
                let Some(p) = self.fields(value, &pw, PARAM_KEYS) else { continue };
                let Some(ty_text) = self.opt_string(&p, "type", &pw) else { continue };
                let Some(ty) = self.value_type(&ty_text, &pw) else { continue };
                let default = p.get("default").map(to_json);
                if let (Some(d), Some(node)) = (&default, p.get("default"))
                    && !ty.value.accepts(d)
                {
                    self.error(
                        "param-type",
                        node.span,
                        format!("the default of {pw} does not have type `{}`", ty.value),
                        Some(format!("give a value of type `{}`, or change `type`", ty.value)),
                    );
                }
                let description = self.opt_string(&p, "description", &pw).map(|s| s.value).unwrap_or_default();
                Param { name: Sp::new(name.to_string(), key.span), ty, default, description }
            } else {
                let default = to_json(value);
                Param {
                    name: Sp::new(name.to_string(), key.span),
                    ty: Sp::new(infer_type(&default), value.span),
                    default: Some(default),
                    description: String::new(),
                }
            };
            params.push(param);
        }
        params
    }

    /// A mapping with arbitrary (user-chosen) string keys, duplicates reported.
    pub(super) fn fields_any<'n>(&mut self, node: &'n Node, what: &str) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut out: Vec<(&str, &Node, &Node)> = Vec::new();
        for (key, value) in entries {
            let Value::Str(name) = &key.value else {
                self.error("wrong-type", key.span, format!("keys of {what} must be strings"), None);
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(k, _, _)| k == name) {
                let line = first.span.line;
                self.error(
                    "duplicate-key",
                    key.span,
                    format!("duplicate key `{name}` in {what} (first written on line {line})"),
                    Some("remove one of the two".into()),
                );
                continue;
            }
            out.push((name.as_str(), key, value));
        }
        Some(out)
    }

    pub(super) fn value_type(&mut self, text: &Sp<String>, what: &str) -> Option<Sp<ValueType>> {
        match ValueType::parse(&text.value) {
            Some(ty) => Some(Sp::new(ty, text.span)),
            None => {
                let hint = suggestion(&text.value, ValueType::SCALARS.iter().copied()).unwrap_or_else(|| {
                    format!("types are {}, or `list<T>` of one of them", ValueType::SCALARS.join(", "))
                });
                self.error("unknown-type", text.span, format!("unknown type `{}` for {what}", text.value), Some(hint));
                None
            }
        }
    }

    pub(super) fn default_args(&mut self, node: Option<&Node>, what: &str) -> TaskDefaults {
        let keys: Vec<&str> = SETTINGS_KEYS.iter().chain(DEFAULT_ARGS_EXTRA_KEYS).copied().collect();
        let f = self.sub_fields(node, &format!("`default_args` of {what}"), &keys, Span::default());
        let w = format!("`default_args` of {what}");
        let settings = self.settings(&f, &w, &TaskSettings::default());
        TaskDefaults {
            pool: self.opt_string(&f, "pool", &w),
            queue: self.opt_string(&f, "queue", &w),
            priority_weight: f
                .value("priority_weight")
                .and_then(|n| self.integer::<i32>(n, "`priority_weight`", -1_000_000, 1_000_000)),
            settings,
        }
    }

    pub(super) fn settings(&mut self, f: &Fields<'_>, what: &str, base: &TaskSettings) -> TaskSettings {
        let mut s = base.clone();
        if let Some(n) = f.value("retries")
            && let Some(v) = self.integer::<u32>(n, &format!("`retries` of {what}"), 0, 1000)
        {
            s.retries = v.value;
        }
        if let Some(n) = f.value("retry_delay") {
            s.retry_delay_secs = self.duration(n, &format!("`retry_delay` of {what}")).unwrap_or(s.retry_delay_secs);
        }
        s.retry_exponential_backoff =
            self.bool_or(f, "retry_exponential_backoff", what, s.retry_exponential_backoff).value;
        if let Some(n) = f.value("max_retry_delay") {
            s.max_retry_delay_secs =
                self.duration(n, &format!("`max_retry_delay` of {what}")).or(s.max_retry_delay_secs);
        }
        if let Some(n) = f.value("execution_timeout") {
            s.execution_timeout_secs =
                self.duration(n, &format!("`execution_timeout` of {what}")).or(s.execution_timeout_secs);
        }
        s.email_on_failure = self.bool_or(f, "email_on_failure", what, s.email_on_failure).value;
        s.email_on_retry = self.bool_or(f, "email_on_retry", what, s.email_on_retry).value;
        if f.value("email").is_some() {
            s.email = self.string_list(f, "email", what).into_iter().map(|e| e.value).collect();
        }
        for (key, targets) in
            [("on_failure", &mut s.on_failure), ("on_retry", &mut s.on_retry), ("on_success", &mut s.on_success)]
        {
            if f.value(key).is_some() {
                *targets = self.string_list(f, key, what);
            }
        }
        if let Some(n) = f.value("sla") {
            s.sla_secs = self.duration(n, &format!("`sla` of {what}")).map(|secs| Sp::new(secs, n.span)).or(s.sla_secs);
        }
        self.retry_delay_cap(f, what, &s);
        s
    }

    /// Warns, where the mapping writes a retry delay, when the cap is below the delay: once at
    /// `default_args` for every task that inherits both, not at each task.
    fn retry_delay_cap(&mut self, f: &Fields<'_>, what: &str, s: &TaskSettings) {
        let Some(max) = s.max_retry_delay_secs else { return };
        let Some(written) = f.value("max_retry_delay").or_else(|| f.value("retry_delay")) else { return };
        if max < s.retry_delay_secs {
            self.diags.push(Diagnostic::warning(
                "retry-delay-cap",
                written.span,
                format!("{what}: `max_retry_delay` ({max}s) is shorter than `retry_delay` ({}s)", s.retry_delay_secs),
            ));
        }
    }
}

/// Per-pipeline defaults applied to every task that does not set its own.
#[derive(Debug)]
pub(super) struct TaskDefaults {
    pub(super) settings: TaskSettings,
    pub(super) pool: Option<Sp<String>>,
    pub(super) queue: Option<Sp<String>>,
    pub(super) priority_weight: Option<Sp<i32>>,
}

pub(super) fn normalize_date(text: &str) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string());
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
}

pub(super) fn infer_type(value: &serde_json::Value) -> ValueType {
    use serde_json::Value as J;
    match value {
        J::String(_) => ValueType::String,
        J::Bool(_) => ValueType::Bool,
        J::Number(n) if n.is_i64() => ValueType::Int,
        J::Number(_) => ValueType::Float,
        J::Array(items) => {
            let first = items.first().map_or(ValueType::Json, infer_type);
            if items.iter().all(|i| infer_type(i) == first) && first != ValueType::Json {
                ValueType::List(Box::new(first))
            } else {
                ValueType::Json
            }
        }
        _ => ValueType::Json,
    }
}
