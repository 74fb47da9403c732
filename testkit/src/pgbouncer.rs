//! The real `pgbouncer`, started as the compose `pgbouncer` service starts it.

use crate::compose::{Compose, ServiceSpec};
use crate::database::{Database, postgres_url};
use crate::process::{Env, START_LIMIT, Service, TAIL_LINES, free_port, is_root, read_file, tail};
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Where the bouncer's one `[databases]` entry leads, and the name it is served under.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The database name clients ask for; `None` keeps the generated entry's.
    pub name: Option<String>,
    /// PostgreSQL's `host:port`.
    pub server: String,
    /// The database on that server.
    pub dbname: String,
    /// The role PgBouncer logs in to PostgreSQL as; `None` keeps the generated entry's
    /// (without one, the client's own).
    pub user: Option<String>,
}

impl Upstream {
    /// `database` on its server, served under its own name.
    pub fn database(database: &Database) -> Upstream {
        Upstream {
            name: Some(database.name().to_string()),
            server: database.address(),
            dbname: database.name().to_string(),
            user: None,
        }
    }
}

/// The real `pgbouncer`, started as the compose `pgbouncer` service starts it: its
/// entrypoint script writes the auth file from the service's environment and execs
/// PgBouncer on the generated ini. Rewritten: the container paths (into a temp dir), the
/// listen address and port (loopback, a free port), the `[databases]` entry (see
/// [`Upstream`]) and, as root, `user = postgres` (PgBouncer refuses to run as root).
/// Killed on Drop.
#[derive(Debug)]
pub struct Bouncer {
    port: u16,
    /// The database name clients ask for.
    database: String,
    script: Vec<String>,
    env: Env,
    log: PathBuf,
    process: Option<Service>,
    dir: TempDir,
}

impl Bouncer {
    /// In front of `database`, with its owner's login (the compose's metadata user).
    pub fn start(compose: &Compose, database: &Database) -> Bouncer {
        let vars = Env::from([("POSTGRES_PASSWORD".to_string(), database.password().to_string())]);
        let spec = compose.service("pgbouncer", &vars).unwrap_or_else(|e| panic!("compose: {e}"));
        for (what, value) in [("user", database.user()), ("password", database.password())] {
            assert!(
                spec.environment.values().any(|v| v == value),
                "the pgbouncer service's environment does not carry the metadata {what}: {:?}",
                spec.environment.keys()
            );
        }
        Bouncer::launch(&spec, &Upstream::database(database), |ini| ini)
    }

    /// The compose `pgbouncer` service `spec` (interpolated by the caller, who may change
    /// its environment) in front of `upstream`. `edit` gets the adapted ini before it is
    /// written: a test takes a setting out to show what it is for.
    pub fn launch(spec: &ServiceSpec, upstream: &Upstream, edit: impl FnOnce(String) -> String) -> Bouncer {
        let (container_ini, host_ini) = spec
            .mounts
            .iter()
            .find(|(target, _)| target.ends_with("pgbouncer.ini"))
            .expect("the pgbouncer service mounts a pgbouncer.ini");
        let generated = fs::read_to_string(host_ini).unwrap_or_else(|e| panic!("read {}: {e}", host_ini.display()));
        let container_auth = ini_value(&generated, "auth_file").expect("auth_file in pgbouncer.ini");

        let dir = tempfile::Builder::new().prefix("sluice-pgbouncer-").tempdir().expect("temp dir");
        let (ini, auth) = (dir.path().join("pgbouncer.ini"), dir.path().join("userlist.txt"));
        let port = free_port();
        let (adapted, database) = local_ini(&generated, port, &auth, upstream);
        fs::write(&ini, edit(adapted)).expect("write pgbouncer.ini");

        let mut script = spec.entrypoint.clone();
        assert!(script.len() >= 2, "pgbouncer entrypoint is not `shell flags script`: {script:?}");
        let body = script.pop().expect("entrypoint script");
        assert!(
            body.contains(&container_auth) && body.contains(container_ini.as_str()),
            "the entrypoint script does not use {container_auth} and {container_ini}:\n{body}"
        );
        script.push(
            body.replace(&container_auth, &auth.to_string_lossy())
                .replace(container_ini.as_str(), &ini.to_string_lossy()),
        );

        let log = dir.path().join("pgbouncer.log");
        let mut bouncer = Bouncer { port, database, script, env: spec.environment.clone(), log, process: None, dir };
        bouncer.spawn();
        bouncer
    }

    /// `postgres://user:password@127.0.0.1:port/database` with the login the entrypoint
    /// wrote into the auth file, as `SLUICE_DATABASE_URL`.
    pub fn url(&self) -> String {
        let (user, password) = self.login();
        postgres_url(&user, &password, &self.address(), &self.database)
    }

    /// The user and password of the auth file: the one login it accepts.
    pub fn login(&self) -> (String, String) {
        let path = self.dir.path().join("userlist.txt");
        let text = read_file(&path);
        let fields = quoted_fields(text.lines().next().unwrap_or_default());
        match <[String; 2]>::try_from(fields) {
            Ok([user, password]) => (user, password),
            Err(fields) => panic!("{} is not one `\"user\" \"password\"` line: {fields:?}", path.display()),
        }
    }

    /// The database name clients ask for.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, what `pgbouncer:6432` becomes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crashed container: clients lose their connections mid-transaction.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills it (if running) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Service::pid)
    }

    /// The ini it runs with.
    pub fn ini_path(&self) -> PathBuf {
        self.dir.path().join("pgbouncer.ini")
    }

    /// A setting of the `[pgbouncer]` section it runs with (`default_pool_size`).
    pub fn setting(&self, key: &str) -> Option<String> {
        ini_value(&read_file(&self.ini_path()), key)
    }

    /// The end of PgBouncer's log (stderr), across restarts.
    pub fn log_tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }

    fn spawn(&mut self) {
        let mut process = Service::spawn("pgbouncer", &self.script[0], &self.script[1..], &self.env, &self.log);
        process.wait_for_port(self.port, START_LIMIT);
        self.process = Some(process);
    }
}

/// The generated ini adapted to this machine (see [`Bouncer`]) and the database name it
/// serves; panics when a setting to adapt is missing, so a changed generator cannot
/// silently test something else.
fn local_ini(generated: &str, port: u16, auth_file: &Path, upstream: &Upstream) -> (String, String) {
    let (mut section, mut out, mut adapted, mut served) = (String::new(), String::new(), Vec::new(), Vec::new());
    let (host, server_port) = upstream.server.rsplit_once(':').expect("upstream server as host:port");
    for line in generated.lines() {
        let trimmed = line.trim();
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        let replaced = if trimmed.starts_with('[') {
            section = trimmed.to_string();
            let user = if section == "[pgbouncer]" && is_root() { "\nuser = postgres" } else { "" };
            format!("{line}{user}")
        } else if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            line.to_string()
        } else {
            match (section.as_str(), key) {
                ("[databases]", name) => {
                    let (_, params) = line.split_once('=').expect("a `name = params` database entry");
                    let mut seen = Vec::new();
                    let mut params: Vec<String> = params
                        .split_whitespace()
                        .map(|p| {
                            let param = p.split_once('=').map_or(p, |(param, _)| param);
                            seen.push(param.to_string());
                            match (param, &upstream.user) {
                                ("host", _) => format!("host={host}"),
                                ("port", _) => format!("port={server_port}"),
                                ("dbname", _) => format!("dbname={}", upstream.dbname),
                                ("user", Some(user)) => format!("user={user}"),
                                _ => p.to_string(),
                            }
                        })
                        .collect();
                    for param in ["host", "port", "dbname"] {
                        assert!(seen.iter().any(|s| s == param), "the database entry has no {param} to adapt: {line}");
                    }
                    if let Some(user) = upstream.user.as_ref().filter(|_| !seen.iter().any(|s| s == "user")) {
                        params.push(format!("user={user}"));
                    }
                    let name = upstream.name.clone().unwrap_or_else(|| name.to_string());
                    let entry = format!("{name} = {}", params.join(" "));
                    served.push(name);
                    entry
                }
                ("[pgbouncer]", "listen_addr") => "listen_addr = 127.0.0.1".to_string(),
                ("[pgbouncer]", "listen_port") => format!("listen_port = {port}"),
                ("[pgbouncer]", "auth_file") => format!("auth_file = {}", auth_file.display()),
                _ => line.to_string(),
            }
        };
        if replaced != line && !trimmed.starts_with('[') && section != "[databases]" {
            adapted.push(key);
        }
        out.push_str(&replaced);
        out.push('\n');
    }
    for key in ["listen_addr", "listen_port", "auth_file"] {
        assert!(adapted.contains(&key), "pgbouncer.ini has no {key} to adapt:\n{generated}");
    }
    match <[String; 1]>::try_from(served) {
        Ok([name]) => (out, name),
        Err(served) => panic!("one database entry expected, found {served:?}:\n{generated}"),
    }
}

/// A setting's value: the first `key = value` line of `ini` with that key.
pub fn ini_value(ini: &str, key: &str) -> Option<String> {
    ini.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The `"..."` fields of an auth file line, `""` inside one standing for `"`.
fn quoted_fields(line: &str) -> Vec<String> {
    let (mut fields, mut chars) = (Vec::new(), line.chars().peekable());
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut field = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => break,
                c => field.push(c),
            }
        }
        fields.push(field);
    }
    fields
}
