//! `deployment:`: the project, the executor, the admin, the keys and the metadata database.

use super::*;

pub(super) const DEPLOYMENT_KEYS: &[&str] = &[
    "project",
    "image",
    "webserver_port",
    "executor",
    "admin",
    "fernet_key_env",
    "secret_key_env",
    "metadata_db",
    "python",
];

pub(super) const EXECUTOR_KEYS: &[&str] =
    &["parallelism", "worker_concurrency", "worker_replicas", "queues", "paused_at_creation", "load_examples"];

pub(super) const ADMIN_KEYS: &[&str] = &["username_env", "password_env", "email_env"];

pub(super) const METADATA_DB_KEYS: &[&str] = &["name", "user", "password"];

impl Lowerer<'_> {
    pub(super) fn deployment(&mut self, node: Option<&Node>) -> Deployment {
        let at = node.map_or(Span::default(), |n| n.span);
        let f = self.sub_fields(node, "`deployment`", DEPLOYMENT_KEYS, at);
        let w = "`deployment`";
        let project = self.string_or(&f, "project", w, "sluice");
        if !is_identifier(&project.value) {
            self.error(
                "invalid-id",
                project.span,
                format!("project name `{}` must be lowercase letters, digits and `_`", project.value),
                Some("it prefixes container and network names, e.g. `mlsp`".into()),
            );
        }
        let image =
            self.opt_string(&f, "image", w).map_or_else(|| format!("{}/sluice:latest", project.value), |s| s.value);
        let webserver_port = self.int_or(&f, "webserver_port", w, (1, 65535), 8080u16);

        let e = self.sub_fields(f.value("executor"), "`deployment.executor`", EXECUTOR_KEYS, f.span);
        let ew = "`deployment.executor`";
        let mut queues = self.string_list(&e, "queues", ew);
        if !queues.iter().any(|q| q.value == DEFAULT_QUEUE) {
            queues.insert(0, Sp::new(DEFAULT_QUEUE.to_string(), e.key_span("queues")));
        }
        let executor = Executor {
            parallelism: self.int_or(&e, "parallelism", ew, (1, 100_000), 32u32),
            worker_concurrency: self.int_or(&e, "worker_concurrency", ew, (1, 10_000), 16u32),
            worker_replicas: self.int_or(&e, "worker_replicas", ew, (0, 1_000), 1u32),
            queues,
            paused_at_creation: self.bool_or(&e, "paused_at_creation", ew, true).value,
            load_examples: self.bool_or(&e, "load_examples", ew, false).value,
        };

        let a = self.sub_fields(f.value("admin"), "`deployment.admin`", ADMIN_KEYS, f.span);
        let aw = "`deployment.admin`";
        let admin = Admin {
            username_env: self.env_name(&a, "username_env", aw, "SLUICE_ADMIN_USERNAME"),
            password_env: self.env_name(&a, "password_env", aw, "SLUICE_ADMIN_PASSWORD"),
            email_env: self.env_name(&a, "email_env", aw, "SLUICE_ADMIN_EMAIL"),
        };
        let fernet_key_env = self.env_name(&f, "fernet_key_env", w, "SLUICE_FERNET_KEY");
        let secret_key_env = self.env_name(&f, "secret_key_env", w, "SLUICE_SECRET_KEY");

        let m = self.sub_fields(f.value("metadata_db"), "`deployment.metadata_db`", METADATA_DB_KEYS, f.span);
        let mw = "`deployment.metadata_db`";
        let password = match m.value("password") {
            Some(node) => self.secret(node, "the metadata database password", "POSTGRES_PASSWORD"),
            None => None,
        };
        let metadata_db = MetadataDb {
            name: self.string_or(&m, "name", mw, "sluice"),
            user: self.string_or(&m, "user", mw, "sluice"),
            password: password
                .unwrap_or_else(|| Sp::new(EnvRef { env: "POSTGRES_PASSWORD".into() }, m.key_span("password"))),
        };
        let python = self.string_or(&f, "python", w, DEFAULT_PYTHON);
        Deployment {
            project,
            image,
            webserver_port,
            executor,
            admin,
            fernet_key_env,
            secret_key_env,
            metadata_db,
            python,
        }
    }
}
