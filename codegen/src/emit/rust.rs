//! Rust: static spec tables, a typed context per task, one dispatch table.
//!
//! Everything the runtime needs is data here; the only code is the glue that turns the
//! runtime's untyped [`TaskInput`] into each Rust task's typed context and calls the
//! user's function, so rustc checks every task body against what the YAML declares.

use crate::diag::Diagnostic;
use crate::graph;
use crate::model::*;
use crate::source::SourceFile;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

/// The generated Rust file for a validated config, formatted for reading.
pub fn render(config: &Config, file: &SourceFile, warnings: &[Diagnostic]) -> String {
    let source = file.name.as_str();
    let tokens = generated(config, file, warnings);
    let body = match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        // Cannot happen for tokens quote! built from a validated model; keep them readable
        // enough for rustc to point at if it ever does.
        Err(_) => tokens.to_string(),
    };
    format!("{}{body}", super::header("//", source))
}

fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

fn opt_str(value: Option<&str>) -> TokenStream {
    match value {
        Some(v) => quote!(Some(#v)),
        None => quote!(None),
    }
}

/// `&[0, 3, 7]`: task indices, unsuffixed (the field's type says `u32`) to keep wide
/// pipelines' tables short.
fn indices(values: &[u32]) -> TokenStream {
    let values = values.iter().map(|&v| Literal::u32_unsuffixed(v));
    quote!(&[#(#values),*])
}

fn opt_u64(value: Option<u64>) -> TokenStream {
    match value {
        Some(v) => quote!(Some(#v)),
        None => quote!(None),
    }
}

fn generated(config: &Config, file: &SourceFile, warnings: &[Diagnostic]) -> TokenStream {
    let source = file.name.as_str();
    let sources = super::sources::table(&config.pipelines, file, warnings);
    let deployment = deployment(config);
    let connections: Vec<TokenStream> = config.connections.iter().map(connection).collect();
    let pools: Vec<TokenStream> = config
        .pools
        .iter()
        .map(|p| {
            let (name, slots, description) = (&p.name.value, p.slots.value, &p.description);
            quote!(PoolSpec { name: #name, slots: #slots, description: #description })
        })
        .collect();
    let python_context = super::python::render(config, source).map(|f| f.contents).unwrap_or_default();
    let datasets: Vec<TokenStream> = config
        .datasets
        .iter()
        .map(|d| {
            let (id, uri, description) = (&d.id.value, &d.uri.value, &d.description);
            quote!(DatasetSpec { id: #id, uri: #uri, description: #description })
        })
        .collect();
    let pipelines: Vec<TokenStream> =
        config.pipelines.iter().map(|p| pipeline_spec(p, has_smtp_default(config))).collect();
    let modules: Vec<TokenStream> = config.pipelines.iter().map(pipeline_module).collect();
    // Sorted as `str` orders, for the binary search in `dispatch`: a table, not a
    // `match`, so that thousands of tasks cost rustc a slice rather than a decision tree.
    let mut rust_tasks: Vec<(&str, &str)> = config
        .pipelines
        .iter()
        .flat_map(|p| p.tasks.iter().map(move |t| (p, t)))
        .filter(|(_, t)| matches!(t.kind, TaskKind::Rust { .. }))
        .map(|(p, t)| (p.id.value.as_str(), t.id.value.as_str()))
        .collect();
    rust_tasks.sort_unstable();
    let entries: Vec<TokenStream> = rust_tasks
        .iter()
        .map(|(pid, tid)| {
            let (pm, tm) = (ident(pid), ident(tid));
            quote!((#pid, #tid, #pm::#tm::run),)
        })
        .collect();
    quote! {
        use sluice_runtime::spec::*;
        use sluice_runtime::{Registry, TaskFuture, TaskInput};

        /// Everything compiled from the pipelines file, for the runtime.
        pub static REGISTRY: Registry = Registry {
            source: #source,
            deployment: &DEPLOYMENT,
            connections: &[#(#connections),*],
            pools: &[#(#pools),*],
            datasets: &[#(#datasets),*],
            pipelines: &[#(#pipelines),*],
            sources: &[#(#sources),*],
            python_context: #python_context,
            dispatch,
        };

        static DEPLOYMENT: DeploymentSpec = #deployment;

        /// Every Rust task's body, by pipeline and task id, sorted.
        static RUST_TASKS: &[(&str, &str, fn(&TaskInput) -> TaskFuture<'_>)] = &[#(#entries)*];

        /// Runs a Rust task by pipeline and task id.
        pub fn dispatch<'a>(pipeline: &str, task: &str, input: &'a TaskInput) -> Option<TaskFuture<'a>> {
            let at = RUST_TASKS.binary_search_by(|(p, t, _)| (*p, *t).cmp(&(pipeline, task))).ok()?;
            Some((RUST_TASKS[at].2)(input))
        }

        #(#modules)*
    }
}

fn deployment(config: &Config) -> TokenStream {
    let d = &config.deployment;
    let e = &d.executor;
    let project = &d.project.value;
    let port = d.webserver_port.value;
    let (parallelism, concurrency, replicas) =
        (e.parallelism.value, e.worker_concurrency.value, e.worker_replicas.value);
    let queues: Vec<&str> = e.queues.iter().map(|q| q.value.as_str()).collect();
    let (paused, examples) = (e.paused_at_creation, e.load_examples);
    let (user, password, email) = (&d.admin.username_env.value, &d.admin.password_env.value, &d.admin.email_env.value);
    let (fernet, secret) = (&d.fernet_key_env.value, &d.secret_key_env.value);
    let (broker, rate) = (config.redis.broker_db.value, config.redis.rate_limit_db.value);
    let python = &d.python.value;
    quote! {
        DeploymentSpec {
            project: #project,
            webserver_port: #port,
            parallelism: #parallelism,
            worker_concurrency: #concurrency,
            worker_replicas: #replicas,
            queues: &[#(#queues),*],
            paused_at_creation: #paused,
            load_examples: #examples,
            admin_username_env: #user,
            admin_password_env: #password,
            admin_email_env: #email,
            fernet_key_env: #fernet,
            secret_key_env: #secret,
            broker_db: #broker,
            rate_limit_db: #rate,
            python: #python,
        }
    }
}

fn connection(c: &Connection) -> TokenStream {
    let id = &c.id.value;
    let ty = format_ident!("{}", variant(c.conn_type.value.name()));
    let description = &c.description;
    let host = opt_str(c.host.as_deref());
    let port = match c.port {
        Some(p) => quote!(Some(#p)),
        None => quote!(None),
    };
    let schema = opt_str(c.schema.as_deref());
    let database = opt_str(c.database.as_deref());
    let login = opt_str(c.login.as_deref());
    let password = opt_str(c.password.as_ref().map(|p| p.value.env.as_str()));
    let extra = serde_json::Value::Object(c.extra.clone().into_iter().collect()).to_string();
    let standalone = opt_str(c.standalone.as_ref().map(|s| s.value.as_str()));
    quote! {
        ConnectionSpec {
            id: #id,
            conn_type: ConnType::#ty,
            description: #description,
            host: #host,
            port: #port,
            schema: #schema,
            database: #database,
            login: #login,
            password_env: #password,
            extra_json: #extra,
            standalone_uri: #standalone,
        }
    }
}

/// `all_success` -> `AllSuccess`: a Rust variant's (or a Python class's) name for a snake_case one.
pub(super) fn variant(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| f.to_ascii_uppercase().to_string() + c.as_str())
        })
        .collect()
}

fn value_type(ty: &ValueType) -> TokenStream {
    match ty {
        ValueType::String => quote!(ValueType::String),
        ValueType::Int => quote!(ValueType::Int),
        ValueType::Float => quote!(ValueType::Float),
        ValueType::Bool => quote!(ValueType::Bool),
        ValueType::Json => quote!(ValueType::Json),
        ValueType::List(inner) => {
            let inner = value_type(inner);
            quote!(ValueType::List(&#inner))
        }
    }
}

/// The Rust type a value of `ty` has in a task body.
fn rust_type(ty: &ValueType) -> TokenStream {
    match ty {
        ValueType::String => quote!(String),
        ValueType::Int => quote!(i64),
        ValueType::Float => quote!(f64),
        ValueType::Bool => quote!(bool),
        ValueType::Json => quote!(sluice_runtime::__private::serde_json::Value),
        ValueType::List(inner) => {
            let inner = rust_type(inner);
            quote!(Vec<#inner>)
        }
    }
}

/// Airflow sends `email_on_failure` / `email_on_retry` mail through its configured SMTP
/// server; here that is the connection `smtp_default`, when one is declared.
fn has_smtp_default(config: &Config) -> bool {
    config.connection(SMTP_DEFAULT).is_some_and(|c| c.conn_type.value == ConnType::Smtp)
}

const SMTP_DEFAULT: &str = "smtp_default";

/// The connections told of one event: those named, and `smtp_default` when the email
/// flag asks for it and there are recipients.
fn targets(named: &[Sp<String>], email_flag: bool, email: &[String], smtp_default: bool) -> TokenStream {
    let mut ids: Vec<&str> = named.iter().map(|t| t.value.as_str()).collect();
    if email_flag && smtp_default && !email.is_empty() && !ids.contains(&SMTP_DEFAULT) {
        ids.push(SMTP_DEFAULT);
    }
    quote!(&[#(#ids),*])
}

fn pipeline_spec(p: &Pipeline, smtp_default: bool) -> TokenStream {
    let id = &p.id.value;
    let (description, owner) = (&p.description, &p.owner);
    let tags = &p.tags;
    let schedule = match &p.schedule.value {
        Schedule::Manual => quote!(Schedule::Manual),
        Schedule::Once => quote!(Schedule::Once),
        Schedule::Cron(_) => {
            let cron = p.schedule.value.cron().unwrap_or_default();
            quote!(Schedule::Cron(#cron))
        }
        Schedule::Datasets(ids) => {
            let ids = ids.iter().map(|d| d.value.as_str());
            quote!(Schedule::Datasets(&[#(#ids),*]))
        }
    };
    let schedule_text = match &p.schedule.value {
        Schedule::Manual => String::new(),
        other => other.to_string(),
    };
    let timezone = &p.timezone.value;
    let start = opt_str(p.start_date.as_ref().map(|d| d.value.as_str()));
    let end = opt_str(p.end_date.as_ref().map(|d| d.value.as_str()));
    let (catchup, runs, tasks_max, paused) =
        (p.catchup.value, p.max_active_runs.value, p.max_active_tasks.value, p.paused_at_creation);
    let params: Vec<TokenStream> = p
        .params
        .iter()
        .map(|param| {
            let name = &param.name.value;
            let ty = value_type(&param.ty.value);
            let default = opt_str(param.default.as_ref().map(|d| d.to_string()).as_deref());
            let description = &param.description;
            quote!(ParamSpec { name: #name, ty: #ty, default_json: #default, description: #description })
        })
        .collect();
    let upstream = graph::upstream(p);
    // Validation rejects cycles, so the facts exist; were they ever missing, the empty
    // tables fail the runtime's `check_graph` at start rather than misorder a run.
    let facts = graph::facts(p, &upstream).unwrap_or_default();
    let tasks: Vec<TokenStream> = p
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let facts = TaskFacts {
                upstream: upstream.get(i).map_or(&[], Vec::as_slice),
                downstream: facts.downstream.get(i).map_or(&[], Vec::as_slice),
                depth: facts.depth.get(i).copied().unwrap_or(0),
                effective_priority_weight: facts.effective_weight.get(i).copied().unwrap_or_default(),
            };
            task_spec(t, smtp_default, &facts)
        })
        .collect();
    let topo_order = indices(&facts.topo_order);
    let hash = version_hash(p);
    let on_failure = targets(&p.on_failure, false, &p.email, false);
    let on_success = targets(&p.on_success, false, &p.email, false);
    let email = &p.email;
    quote! {
        PipelineSpec {
            id: #id,
            description: #description,
            owner: #owner,
            tags: &[#(#tags),*],
            schedule: #schedule,
            schedule_text: #schedule_text,
            timezone: #timezone,
            start_date: #start,
            end_date: #end,
            catchup: #catchup,
            max_active_runs: #runs,
            max_active_tasks: #tasks_max,
            paused_at_creation: #paused,
            params: &[#(#params),*],
            on_failure: #on_failure,
            on_success: #on_success,
            email: &[#(#email),*],
            tasks: &[#(#tasks),*],
            topo_order: #topo_order,
            version_hash: #hash,
        }
    }
}

/// One task's graph facts, as [`graph::facts`] found them.
struct TaskFacts<'f> {
    upstream: &'f [u32],
    downstream: &'f [u32],
    depth: u32,
    effective_priority_weight: i64,
}

fn task_spec(t: &Task, smtp_default: bool, facts: &TaskFacts<'_>) -> TokenStream {
    let id = &t.id.value;
    let description = &t.description;
    let kind = match &t.kind {
        TaskKind::Rust { path } => {
            let path = &path.value;
            quote!(TaskKind::Rust { path: #path })
        }
        TaskKind::Shell { command, env, skip_exit_code } => {
            let command = &command.value;
            let env: Vec<TokenStream> = env.iter().map(|(k, v)| (k, &v.value)).map(|(k, v)| quote!((#k, #v))).collect();
            let skip = match skip_exit_code {
                Some(code) => quote!(Some(#code)),
                None => quote!(None),
            };
            quote!(TaskKind::Shell { command: #command, env: &[#(#env),*], skip_exit_code: #skip })
        }
        TaskKind::Http(h) => {
            let (conn, method, endpoint) = (&h.conn.value, &h.method.value, &h.endpoint.value);
            let body = opt_str(h.body.as_ref().map(|b| b.value.as_str()));
            let headers: Vec<TokenStream> = h.headers.iter().map(|(k, v)| quote!((#k, #v))).collect();
            let (expect, skip) = (&h.expect_status, &h.skip_status);
            quote!(TaskKind::Http {
                conn: #conn,
                method: #method,
                endpoint: #endpoint,
                body: #body,
                headers: &[#(#headers),*],
                expect_status: &[#(#expect),*],
                skip_status: &[#(#skip),*],
            })
        }
        TaskKind::Sql { conn, statement } => {
            let (conn, statement) = (&conn.value, &statement.value);
            quote!(TaskKind::Sql { conn: #conn, statement: #statement })
        }
        TaskKind::Python { module, function } => {
            let (module, function) = (&module.value, &function.value);
            quote!(TaskKind::Python { module: #module, function: #function })
        }
    };
    let depends_on: Vec<&str> = t.depends_on.iter().map(|d| d.value.as_str()).collect();
    let rule = format_ident!("{}", variant(t.trigger_rule.value.name()));
    let s = &t.settings;
    let (retries, delay, backoff) = (s.retries, s.retry_delay_secs, s.retry_exponential_backoff);
    let max_delay = opt_u64(s.max_retry_delay_secs);
    let timeout = opt_u64(s.execution_timeout_secs);
    let (email_on_failure, email_on_retry) = (s.email_on_failure, s.email_on_retry);
    let email = &s.email;
    let on_failure = targets(&s.on_failure, s.email_on_failure, email, smtp_default);
    let on_retry = targets(&s.on_retry, s.email_on_retry, email, smtp_default);
    let on_success = targets(&s.on_success, false, email, smtp_default);
    let sla = opt_u64(s.sla_secs.as_ref().map(|s| s.value));
    let (pool, slots, weight, queue) = (&t.pool.value, t.pool_slots.value, t.priority_weight, &t.queue.value);
    let connections: Vec<&str> = t.connections.iter().map(|c| c.value.as_str()).collect();
    let outputs: Vec<TokenStream> = t
        .outputs
        .iter()
        .map(|o| (o.name.value.clone(), o.ty.value.clone()))
        .chain(undeclared_outputs(t).into_iter().map(|(n, ty)| (n.to_string(), ty)))
        .map(|(name, ty)| {
            let ty = value_type(&ty);
            quote!(OutputSpec { name: #name, ty: #ty })
        })
        .collect();
    let renamed: Vec<&str> = t.renamed_from.iter().map(|r| r.value.as_str()).collect();
    let branch: Vec<&str> = t.branch.iter().map(|b| b.value.as_str()).collect();
    let produces: Vec<&str> = t.produces.iter().map(|d| d.value.as_str()).collect();
    let sensor = match &t.sensor {
        None => quote!(None),
        Some(s) => {
            let (interval, timeout, soft_fail, exit) =
                (s.poke_interval_secs.value, s.timeout_secs.value, s.soft_fail, s.exit_code.value);
            let mode = format_ident!("{}", variant(s.mode.value.name()));
            quote!(Some(SensorSpec {
                poke_interval_secs: #interval,
                timeout_secs: #timeout,
                mode: SensorMode::#mode,
                soft_fail: #soft_fail,
                not_ready_exit_code: #exit,
            }))
        }
    };
    let (upstream, downstream) = (indices(facts.upstream), indices(facts.downstream));
    let (depth, effective_weight) = (facts.depth, facts.effective_priority_weight);
    quote! {
        TaskSpec {
            id: #id,
            description: #description,
            kind: #kind,
            depends_on: &[#(#depends_on),*],
            upstream: #upstream,
            downstream: #downstream,
            depth: #depth,
            effective_priority_weight: #effective_weight,
            trigger_rule: TriggerRule::#rule,
            retry: RetryPolicy {
                retries: #retries,
                retry_delay_secs: #delay,
                exponential_backoff: #backoff,
                max_retry_delay_secs: #max_delay,
            },
            execution_timeout_secs: #timeout,
            email_on_failure: #email_on_failure,
            email_on_retry: #email_on_retry,
            email: &[#(#email),*],
            on_failure: #on_failure,
            on_retry: #on_retry,
            on_success: #on_success,
            sla_secs: #sla,
            pool: #pool,
            pool_slots: #slots,
            priority_weight: #weight,
            queue: #queue,
            connections: &[#(#connections),*],
            outputs: &[#(#outputs),*],
            produces: &[#(#produces),*],
            sensor: #sensor,
            branch: &[#(#branch),*],
            renamed_from: &[#(#renamed),*],
        }
    }
}

/// The typed API of one pipeline: its params struct and a module per task.
fn pipeline_module(p: &Pipeline) -> TokenStream {
    let module = ident(&p.id.value);
    let doc = format!(" Pipeline `{}`: typed params and one module per task.", p.id.value);
    let fields: Vec<TokenStream> = p
        .params
        .iter()
        .map(|param| {
            let name = ident(&param.name.value);
            let ty = rust_type(&param.ty.value);
            quote!(pub #name: #ty)
        })
        .collect();
    let tasks: Vec<TokenStream> = p.tasks.iter().map(|t| task_module(p, t)).collect();
    quote! {
        #[doc = #doc]
        pub mod #module {
            /// The pipeline's params, typed as declared.
            #[derive(Debug, Clone, sluice_runtime::__private::serde::Deserialize)]
            #[serde(crate = "sluice_runtime::__private::serde")]
            pub struct Params {
                #(#fields),*
            }

            #(#tasks)*
        }
    }
}

/// Whether a task's outputs carry data (a Rust or Python task with no outputs has `()`).
fn has_outputs(t: &Task) -> bool {
    !matches!(t.kind, TaskKind::Rust { .. } | TaskKind::Python { .. }) || !t.outputs.is_empty() || !t.branch.is_empty()
}

/// A branch task's `Branch` enum: one variant per target, serialized as the task id.
fn branch_enum(t: &Task) -> TokenStream {
    let variants: Vec<TokenStream> = t
        .branch
        .iter()
        .map(|b| {
            let (id, name) = (&b.value, format_ident!("{}", variant(&b.value)));
            let doc = format!(" Run `{id}`.");
            quote!(#[doc = #doc] #[serde(rename = #id)] #name)
        })
        .collect();
    quote! {
        /// The tasks this branch task may choose to run; those of its `branch:` it does not
        /// choose are skipped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, sluice_runtime::__private::serde::Serialize, sluice_runtime::__private::serde::Deserialize)]
        #[serde(crate = "sluice_runtime::__private::serde")]
        pub enum Branch {
            #(#variants),*
        }
    }
}

fn task_module(p: &Pipeline, t: &Task) -> TokenStream {
    let module = ident(&t.id.value);
    let doc = format!(" Task `{}` ({}).", t.id.value, t.kind.name());
    let outputs = match &t.kind {
        TaskKind::Rust { .. } | TaskKind::Python { .. } if !has_outputs(t) => quote! {
            /// This task declares no outputs.
            pub type Outputs = ();
        },
        TaskKind::Rust { .. } | TaskKind::Python { .. } => {
            let mut fields: Vec<TokenStream> = t
                .outputs
                .iter()
                .map(|o| {
                    let name = ident(&o.name.value);
                    let ty = rust_type(&o.ty.value);
                    quote!(pub #name: #ty)
                })
                .collect();
            let branch = if t.branch.is_empty() {
                quote!()
            } else {
                fields.push(quote!(
                    /// The targets to run, in any order (none: all are skipped).
                    pub branch: Vec<Branch>
                ));
                branch_enum(t)
            };
            quote! {
                #branch

                /// What this task returns, typed as declared under `outputs:`.
                #[derive(Debug, Clone, PartialEq, sluice_runtime::__private::serde::Serialize, sluice_runtime::__private::serde::Deserialize)]
                #[serde(crate = "sluice_runtime::__private::serde")]
                pub struct Outputs {
                    #(#fields),*
                }
            }
        }
        TaskKind::Shell { .. } if t.outputs.is_empty() => quote!(
            pub type Outputs = sluice_runtime::task::ShellOutputs;
        ),
        TaskKind::Shell { .. } => {
            let fields: Vec<TokenStream> = implicit_outputs(&t.kind)
                .into_iter()
                .map(|(name, ty)| (name.to_string(), ty))
                .chain(t.outputs.iter().map(|o| (o.name.value.clone(), o.ty.value.clone())))
                .map(|(name, ty)| {
                    let (name, ty) = (ident(&name), rust_type(&ty));
                    quote!(pub #name: #ty)
                })
                .collect();
            quote! {
                /// What this task outputs: its command's last line and exit code, and what it
                /// wrote to `$SLUICE_OUTPUTS`, typed as declared under `outputs:`.
                #[derive(Debug, Clone, PartialEq, sluice_runtime::__private::serde::Serialize, sluice_runtime::__private::serde::Deserialize)]
                #[serde(crate = "sluice_runtime::__private::serde")]
                pub struct Outputs {
                    #(#fields),*
                }
            }
        }
        TaskKind::Http(_) => quote!(
            pub type Outputs = sluice_runtime::task::HttpOutputs;
        ),
        TaskKind::Sql { .. } => quote!(
            pub type Outputs = sluice_runtime::task::SqlOutputs;
        ),
    };
    let TaskKind::Rust { path } = &t.kind else {
        return quote! {
            #[doc = #doc]
            pub mod #module {
                #outputs
            }
        };
    };
    // Validation guarantees the path parses; fall back to an ident rustc will report.
    let path: syn::Path = syn::parse_str(&path.value).unwrap_or_else(|_| syn::Path::from(ident("invalid_task_path")));

    let conn_ids: Vec<&str> = t.connections.iter().map(|c| c.value.as_str()).collect();
    let conn_fields: Vec<Ident> = conn_ids.iter().map(|c| ident(c)).collect();
    let (connections, conn_type) = if conn_ids.is_empty() {
        (
            quote!(
                #[derive(Debug)]
                pub struct Connections;
            ),
            quote!(Connections),
        )
    } else {
        (
            quote!(#[derive(Debug)] pub struct Connections<'a> { #(pub #conn_fields: &'a sluice_runtime::Connection),* }),
            quote!(Connections<'a>),
        )
    };
    let conn_value = if conn_ids.is_empty() {
        quote!(Connections)
    } else {
        quote!(Connections { #(#conn_fields: input.connection(#conn_ids)?),* })
    };

    let optional = !t.trigger_rule.value.needs_all_upstream_success();
    let ups: Vec<&Task> = t.depends_on.iter().filter_map(|d| p.task(&d.value)).filter(|u| has_outputs(u)).collect();
    let up_fields: Vec<TokenStream> = ups
        .iter()
        .map(|u| {
            let name = ident(&u.id.value);
            if optional {
                quote!(pub #name: Option<super::#name::Outputs>)
            } else {
                quote!(pub #name: super::#name::Outputs)
            }
        })
        .collect();
    let up_values: Vec<TokenStream> = ups
        .iter()
        .map(|u| {
            let id = &u.id.value;
            let name = ident(id);
            if optional { quote!(#name: input.upstream_optional(#id)?) } else { quote!(#name: input.upstream(#id)?) }
        })
        .collect();
    let up_doc = if optional {
        " Outputs of upstream tasks; `None` where an upstream did not succeed (the trigger rule lets this task run anyway)."
    } else {
        " Outputs of upstream tasks, typed as they declare them."
    };
    quote! {
        #[doc = #doc]
        pub mod #module {
            /// The connections this task declares, and only those.
            #connections

            #[doc = #up_doc]
            #[derive(Debug)]
            pub struct Upstream {
                #(#up_fields),*
            }

            #outputs

            /// What the task body receives.
            pub type Context<'a> = sluice_runtime::TaskContext<'a, super::Params, #conn_type, Upstream>;

            pub(crate) fn run(input: &sluice_runtime::TaskInput) -> sluice_runtime::TaskFuture<'_> {
                Box::pin(async move {
                    let ctx: Context<'_> = sluice_runtime::TaskContext {
                        run: &input.run,
                        params: input.params()?,
                        conn: #conn_value,
                        upstream: Upstream { #(#up_values),* },
                        log: &input.log,
                    };
                    let outputs: Outputs = #path(ctx).await?;
                    sluice_runtime::task::to_output(&outputs)
                })
            }
        }
    }
}

/// FNV-1a over the pipeline's canonical JSON: stable across builds and machines.
pub fn version_hash(p: &Pipeline) -> String {
    let json = serde_json::to_string(p).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
