//! Templates: Jinja syntax (minijinja) over Airflow's template context, so a command
//! written for Airflow's `BashOperator` renders the same here.
//!
//! ```text
//! echo '{{ params.greeting }} on {{ ds }}'          -> echo 'Hello on 2024-01-01'
//! psql -h {{ conn.postgres_mlsp.host }} ...           (a connection the task declares)
//! --since {{ data_interval_start.strftime('%Y-%m-%d') }}
//! ```
//!
//! Undefined names are errors, as with Airflow's default `StrictUndefined`: `{{ params.nope }}`
//! fails the task with a sentence naming `params.nope` and why it is undefined, instead of
//! rendering an empty string into a command. `{% if params.x is defined %}` tests for one.
//!
//! Dates follow Airflow: `ds`, `ts` and friends are the logical date in UTC, and
//! `logical_date`, `data_interval_start` and `data_interval_end` are date-time values that
//! render as ISO 8601 (`2024-01-01T00:00:00+00:00`) and have `.strftime(fmt)`,
//! `.isoformat()`, `.timestamp()` and `.year` ... `.microsecond`.

use crate::connection::Connection;
use crate::task::{RunInfo, TaskError, TaskInput};
use minijinja::value::{Enumerator, Object, Serde, Value, from_args};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

mod dates;
mod macros;
pub mod quoting;
mod shell;
mod sql;

pub(crate) use dates::isoformat_utc;
use dates::{TemplateDate, isoformat, parse_date};

pub use quoting::Language;

/// The names a template may use at its top level, the list the compiler checks templates
/// against at build time.
pub use sluice_contract::template::TEMPLATE_VARIABLES;

/// Attributes of `conn.<id>`, as Airflow's `Connection` has them (`database` is ours).
const CONNECTION_ATTRIBUTES: &[&str] = &[
    "conn_id",
    "conn_type",
    "host",
    "port",
    "login",
    "password",
    "schema",
    "database",
    "extra",
    "extra_dejson",
    "uri",
];

/// What a template can see for one task instance.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    /// The top-level names and their values, as `root` holds them.
    entries: Vec<(&'static str, Value)>,
    root: Value,
    /// Why a date-derived variable is missing (the run's date is not RFC 3339), by name.
    date_problems: BTreeMap<&'static str, String>,
}

impl TemplateContext {
    /// The context of a task instance: its run, the run's params (a JSON object; `null` is
    /// no params), the variables (`var.value.X`, `var.json.X`) and the connections the task
    /// declared (`conn.X`).
    ///
    /// A date of `run` that is not RFC 3339 does not fail here: the variables derived from
    /// it are left out, and a template that uses one fails with the reason.
    pub fn new(
        run: &RunInfo,
        params: &serde_json::Value,
        variables: Arc<BTreeMap<String, String>>,
        connections: &BTreeMap<String, Connection>,
    ) -> TemplateContext {
        let mut root: Vec<(&'static str, Value)> = Vec::new();
        let mut date_problems = BTreeMap::new();

        match parse_date("logical date", &run.logical_date) {
            Ok(date) => {
                root.push(("ds", Value::from(date.format("%Y-%m-%d").to_string())));
                root.push(("ds_nodash", Value::from(date.format("%Y%m%d").to_string())));
                root.push(("ts", Value::from(isoformat(&date))));
                root.push(("ts_nodash", Value::from(date.format("%Y%m%dT%H%M%S").to_string())));
                root.push(("logical_date", Value::from_object(TemplateDate(date))));
            }
            Err(problem) => {
                for name in ["ds", "ds_nodash", "ts", "ts_nodash", "logical_date"] {
                    date_problems.insert(name, problem.clone());
                }
            }
        }
        for (name, text) in
            [("data_interval_start", &run.data_interval_start), ("data_interval_end", &run.data_interval_end)]
        {
            match parse_date(&name.replace('_', " "), text) {
                Ok(date) => root.push((name, Value::from_object(TemplateDate(date)))),
                Err(problem) => {
                    date_problems.insert(name, problem);
                }
            }
        }
        // Airflow's `None` when no earlier run succeeded.
        for (name, text) in [
            ("prev_data_interval_start_success", &run.prev_data_interval_start_success),
            ("prev_start_date_success", &run.prev_start_date_success),
        ] {
            let value = match text.as_deref().map(|t| parse_date(&name.replace('_', " "), t)) {
                Some(Ok(date)) => Value::from_object(TemplateDate(date)),
                _ => Value::from(()),
            };
            root.push((name, value));
        }
        let dag_run_date = |name: &str| root.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let dag_run = Value::from_pairs([
            ("conf", Value::from(Serde(if run.conf.is_null() { serde_json::json!({}) } else { run.conf.clone() }))),
            ("run_id", Value::from(run.run_id.clone())),
            ("run_type", Value::from(run.run_type.clone())),
            ("dag_id", Value::from(run.pipeline_id.clone())),
            ("logical_date", dag_run_date("logical_date").unwrap_or_default()),
            ("data_interval_start", dag_run_date("data_interval_start").unwrap_or_default()),
            ("data_interval_end", dag_run_date("data_interval_end").unwrap_or_default()),
        ]);
        root.push(("dag_run", dag_run));
        root.push(("macros", macros::namespace()));

        root.push(("run_id", Value::from(run.run_id.clone())));
        root.push(("pipeline_id", Value::from(run.pipeline_id.clone())));
        root.push(("task_id", Value::from(run.task_id.clone())));
        root.push(("try_number", Value::from(run.try_number)));
        let params = match params {
            serde_json::Value::Null => Value::from_pairs(Vec::<(String, Value)>::new()),
            other => Value::from(Serde(other)),
        };
        root.push(("params", params));
        root.push((
            "var",
            Value::from_pairs([
                ("value", Value::from_object(Variables { vars: variables.clone(), json: false })),
                ("json", Value::from_object(Variables { vars: variables, json: true })),
            ]),
        ));
        let conns = connections.iter().map(|(id, c)| (id.clone(), Value::from_object(TemplateConnection::new(c))));
        root.push(("conn", Value::from_pairs(conns)));
        root.push(("upstream", Value::from_pairs(Vec::<(String, Value)>::new())));

        TemplateContext { root: Value::from_pairs(root.clone()), entries: root, date_problems }
    }

    /// The context with `upstream.<task>.<output>`: the outputs of the direct upstream tasks
    /// that produced some, by task id.
    pub fn with_upstream(mut self, outputs: &BTreeMap<String, serde_json::Value>) -> TemplateContext {
        for (name, value) in &mut self.entries {
            if *name == "upstream" {
                *value = Value::from(Serde(outputs));
            }
        }
        self.root = Value::from_pairs(self.entries.clone());
        self
    }

    /// The context of `input`'s task instance.
    pub fn from_input(input: &TaskInput, variables: Arc<BTreeMap<String, String>>) -> TemplateContext {
        TemplateContext::new(&input.run, &input.params, variables, &input.connections)
            .with_upstream(&input.upstream_outputs)
    }

    /// The top-level names this context defines, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .root
            .try_iter()
            .map(|keys| keys.filter_map(|k| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Whether any of `templates` reads the top-level name `name` (`var` for Variables). A
/// template that does not parse counts as reading it: rendering will report the error.
pub fn reads(templates: &[&str], name: &str) -> bool {
    templates.iter().any(|text| {
        plain_environment().template_from_str(text).map_or(true, |t| t.undeclared_variables(false).contains(name))
    })
}

/// Renders `template` with `ctx`, every value written as it is: for text that is never
/// interpreted as code (an http endpoint's path, a body, a header). Shell commands and SQL
/// statements go through [`render_quoted`].
///
/// An undefined name is an error naming it and saying why
/// (`` `params.nope` is undefined (the run has no param `nope`) ``); every error is one
/// sentence, with the line when the template has several.
pub fn render(template: &str, ctx: &TemplateContext) -> Result<String, TaskError> {
    render_with(plain_environment(), template, ctx)
}

/// Renders `template` with `ctx` so that no value can change what the text is: every value
/// becomes one literal word of a shell command or one literal of an SQL statement, quoted
/// for the place it lands in (see [`quoting`]). A value that cannot be quoted where it
/// stands (inside backticks, a here-document, a dollar-quoted body...) fails the render
/// with a sentence saying where and what to write instead.
///
/// `{{ value | safe }}` writes a value as it is: an explicit opt-out, which the compiler
/// warns about.
pub fn render_quoted(template: &str, ctx: &TemplateContext, language: Language) -> Result<String, TaskError> {
    if template.contains(quoting::MARK_START) || template.contains(quoting::MARK_END) {
        return Err(TaskError::new("the template contains a reserved character (U+E000 or U+E001)"));
    }
    let marked = render_with(quoting::marking_environment(), template, ctx)?;
    quoting::quote(&marked, language).map_err(TaskError::new)
}

fn render_with(env: &Environment<'static>, template: &str, ctx: &TemplateContext) -> Result<String, TaskError> {
    let compiled =
        env.template_from_str(template).map_err(|e| TaskError::new(describe_error(&e, template, ctx, None)))?;
    compiled.render(&ctx.root).map_err(|e| TaskError::new(describe_error(&e, template, ctx, Some(&compiled))))
}

fn plain_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(base_environment)
}

/// The settings every template environment shares.
fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Airflow renders with jinja2's StrictUndefined.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Lets minijinja name the expression that was undefined in its error.
    env.set_debug(true);
    env
}

// ---------------------------------------------------------------------------------------
// Errors

fn describe_error(
    err: &minijinja::Error,
    template: &str,
    ctx: &TemplateContext,
    compiled: Option<&minijinja::Template<'_, '_>>,
) -> String {
    let line = match err.line() {
        Some(line) if template.trim_end().contains('\n') => format!(" at line {line}"),
        _ => String::new(),
    };
    if err.kind() == ErrorKind::UndefinedError {
        let expr =
            err.detail().and_then(undefined_expression).or_else(|| compiled.and_then(|t| first_undefined(t, ctx)));
        if let Some(expr) = expr {
            return format!("`{expr}` is undefined{line} ({})", ctx.why_undefined(&expr));
        }
        return format!("a value in the template is undefined{line}");
    }
    match err.detail() {
        Some(detail) => format!("{}: {detail}{line}", err.kind()),
        None => format!("{}{line}", err.kind()),
    }
}

/// The expression minijinja names in "`user.name` is undefined" (possibly after a detail).
fn undefined_expression(detail: &str) -> Option<String> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')?;
    Some(detail[start + 1..end].to_string())
}

/// The first dotted name the template reads that the context does not define.
fn first_undefined(template: &minijinja::Template<'_, '_>, ctx: &TemplateContext) -> Option<String> {
    let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let parts: Vec<&str> = name.split('.').collect();
        ctx.missing_at(&parts).map(|at| parts[..=at].join("."))
    })
}

impl TemplateContext {
    /// The index of the first part of `path` that is undefined, if any.
    fn missing_at(&self, path: &[&str]) -> Option<usize> {
        let mut value = self.root.clone();
        for (i, part) in path.iter().enumerate() {
            match value.get_attr(part) {
                Ok(next) if !next.is_undefined() => value = next,
                _ => return Some(i),
            }
        }
        None
    }

    /// Why `expr` (as minijinja or [`first_undefined`] names it) is undefined.
    fn why_undefined(&self, expr: &str) -> String {
        let is_path = expr.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if !is_path {
            return "it is not defined".to_string();
        }
        let parts: Vec<&str> = expr.split('.').collect();
        let Some(at) = self.missing_at(&parts) else {
            return "it is not defined".to_string();
        };
        let name = parts[at];
        let parent = parts[..at].join(".");
        match (at, parts[0]) {
            (0, root) => match self.date_problems.get(root) {
                Some(problem) => problem.clone(),
                None => format!("it is not a template variable; the variables are {}", TEMPLATE_VARIABLES.join(", ")),
            },
            (1, "params") => format!("the run has no param `{name}`"),
            (1, "var") => "`var` has `var.value.<name>` and `var.json.<name>`".to_string(),
            (2, "var") => {
                let exists = self.missing_at(&["var", "value", name]).is_none();
                if parts[1] == "json" && exists {
                    format!("variable `{name}` is not valid JSON")
                } else {
                    format!("no variable `{name}` is set")
                }
            }
            (1, "conn") => format!("the task does not declare connection `{name}`"),
            (1, "upstream") => format!("`{name}` is not a direct upstream task that succeeded with outputs"),
            (2, "upstream") => format!("upstream task `{}` has no output `{name}`", parts[1]),
            (2, "conn") => {
                format!("a connection has no attribute `{name}`; it has {}", CONNECTION_ATTRIBUTES.join(", "))
            }
            (1, "logical_date" | "data_interval_start" | "data_interval_end") => {
                format!(
                    "`{parent}` has no attribute `{name}`; it has year, month, day, hour, minute, second, microsecond"
                )
            }
            _ => format!("`{parent}` has no attribute or key `{name}`"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Variables and connections

/// `var.value` (strings) or `var.json` (each value parsed as JSON when read).
struct Variables {
    vars: Arc<BTreeMap<String, String>>,
    json: bool,
}

impl fmt::Debug for Variables {
    /// Names only: variables can hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variables")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .field("json", &self.json)
            .finish()
    }
}

impl Variables {
    fn lookup(&self, name: &str) -> Option<Value> {
        let text = self.vars.get(name)?;
        if self.json {
            serde_json::from_str::<serde_json::Value>(text).ok().map(|v| Value::from(Serde(v)))
        } else {
            Some(Value::from(text.clone()))
        }
    }
}

impl Object for Variables {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key.as_str()?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.vars.keys().map(|k| Value::from(k.clone())).collect())
    }

    /// Airflow's `var.value.get(name, default)`.
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        if method != "get" {
            return Err(minijinja::Error::new(
                ErrorKind::UnknownMethod,
                format!("`var` has no method `{method}`; it has get(name, default)"),
            ));
        }
        let (name, default): (&str, Option<Value>) = from_args(args)?;
        match (self.lookup(name), default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default),
            (None, None) if self.json && self.vars.contains_key(name) => {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("variable `{name}` is not valid JSON")))
            }
            (None, None) => {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("no variable `{name}` is set")))
            }
        }
    }
}

/// `conn.<id>`: Airflow's `Connection` attributes. Renders as its id (as Airflow's does).
struct TemplateConnection {
    conn: Connection,
}

impl fmt::Debug for TemplateConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Connection's Debug never prints the password.
        self.conn.fmt(f)
    }
}

impl TemplateConnection {
    fn new(conn: &Connection) -> TemplateConnection {
        TemplateConnection { conn: conn.clone() }
    }

    /// Airflow's `schema`: the protocol of an http connection, the database of the others.
    fn airflow_schema(&self) -> Option<&str> {
        if self.conn.conn_type == "http" {
            self.conn.schema.as_deref()
        } else {
            self.conn.database.as_deref().or(self.conn.schema.as_deref())
        }
    }
}

fn optional(text: Option<&str>) -> Value {
    text.map_or(Value::from(()), Value::from)
}

impl Object for TemplateConnection {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let c = &self.conn;
        Some(match key.as_str()? {
            "conn_id" => Value::from(c.id.clone()),
            "conn_type" => Value::from(c.conn_type.clone()),
            "host" => optional(c.host.as_deref()),
            "port" => c.port.map_or(Value::from(()), Value::from),
            "login" => optional(c.login.as_deref()),
            "password" => optional(c.password.as_deref()),
            "schema" => optional(self.airflow_schema()),
            "database" => optional(c.database.as_deref()),
            "extra" => Value::from(serde_json::Value::Object(c.extra.clone()).to_string()),
            "extra_dejson" => Value::from(Serde(&c.extra)),
            "uri" => Value::from(c.uri()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(CONNECTION_ATTRIBUTES)
    }

    /// Airflow's `get_uri()`, `get_password()` and `get_extra()`.
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        let () = from_args(args)?;
        let attr = match method {
            "get_uri" => "uri",
            "get_password" => "password",
            "get_extra" => "extra",
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::UnknownMethod,
                    format!("a connection has no method `{method}`; it has get_uri, get_password, get_extra"),
                ));
            }
        };
        Ok(self.get_value(&Value::from(attr)).unwrap_or_default())
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.conn.id)
    }
}
