//! A PostgreSQL server of the test's own: `initdb` into a temporary directory, a free
//! port, trust auth; optionally with TLS (`ssl=on`) and a certificate of a [`TestCa`].
//!
//! [`TestCa`]: crate::certs::TestCa

use crate::certs::ServerCert;
use crate::process::{free_port, is_root, run_checked, tail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

const INSTALL_HINT: &str = "install PostgreSQL's server programs (Debian: apt-get install postgresql)";

/// Stopped on Drop, so a test may crash and restart it without disturbing the machine's.
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    tls: bool,
}

impl PrivatePostgres {
    /// Without TLS.
    pub fn start() -> PrivatePostgres {
        PrivatePostgres::init(None)
    }

    /// With `ssl = on`, presenting `cert`.
    pub fn start_tls(cert: &ServerCert) -> PrivatePostgres {
        PrivatePostgres::init(Some(cert))
    }

    fn init(cert: Option<&ServerCert>) -> PrivatePostgres {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new().prefix("sluice-postgres-").tempdir().expect("temp dir");
        let data = dir.path().join("data");
        initdb(&bin, dir.path(), &data);
        if let Some(cert) = cert {
            // The key must belong to the server's user and be private to it.
            for (name, text) in [("server.crt", &cert.cert_pem), ("server.key", &cert.key_pem)] {
                let path = data.join(name);
                fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
                if is_root() {
                    run_checked(Command::new("chown").args(["postgres:postgres", &path.to_string_lossy()]));
                }
            }
        }
        let server = PrivatePostgres { port: free_port(), bin, dir, tls: cert.is_some() };
        server.start_again();
        server
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it the way a crash does (`immediate`: no checkpoint, connections cut).
    pub fn crash(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.path().join("postgres.log").to_string_lossy().into_owned();
        self.pg_ctl(&["start", "-w", "-t", "30", "-o", &options, "-l", &log]);
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("postgres.log"), 40)
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data").to_string_lossy().into_owned();
        run_checked(as_postgres(&self.bin.join("pg_ctl")).args(["-D", &data]).args(args));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").to_string_lossy().into_owned();
        let _ = as_postgres(&self.bin.join("pg_ctl")).args(["-D", &data, "stop", "-m", "immediate"]).output();
    }
}

/// A new cluster in `data` (under `dir`), trust auth for the superuser `postgres`.
fn initdb(bin: &Path, dir: &Path, data: &Path) {
    if is_root() {
        // PostgreSQL refuses to run as root: the files belong to `postgres`.
        run_checked(Command::new("chown").args(["postgres:postgres", &dir.to_string_lossy()]));
    }
    let data = data.to_string_lossy();
    run_checked(as_postgres(&bin.join("initdb")).args(["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]));
}

/// The directory of PostgreSQL's server programs (Debian keeps them out of PATH).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| Some(e.ok()?.path().join("bin"))).filter(|b| b.join("initdb").is_file()).collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| panic!("no /usr/lib/postgresql/*/bin/initdb: {INSTALL_HINT}"))
}

/// `program` run as the `postgres` user when the test runs as root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Where the tests that need a PostgreSQL with trust auth for `postgres` find one
/// (`host:port`): the machine's on 127.0.0.1:5432 when it answers; otherwise one private
/// server of the tests' own, made with `initdb` under the temporary directory on first use
/// and left running for the next test binaries (stop it with
/// `pg_ctl -D <tmp>/sluice-test-postgres/data stop`). `SLUICE_TEST_POSTGRES=private` uses
/// the private one even when the machine's answers.
pub fn address() -> &'static str {
    static ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDRESS.get_or_init(|| {
        let forced = std::env::var("SLUICE_TEST_POSTGRES").is_ok_and(|v| v == "private");
        let machine = "127.0.0.1:5432";
        if !forced && answers(machine) { machine.to_string() } else { shared_private() }
    })
}

/// `postgres://postgres@<address>/<database>`.
pub fn url(database: &str) -> String {
    format!("postgres://postgres@{}/{database}", address())
}

/// The port of [`address`].
pub fn port() -> u16 {
    address().rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
}

fn answers(address: &str) -> bool {
    let Ok(address) = address.parse() else { return false };
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).is_ok()
}

/// The private server shared by test binaries: one directory, its start serialized by a
/// file lock, its port kept in a file.
fn shared_private() -> String {
    let dir = std::env::temp_dir().join("sluice-test-postgres");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let lock = fs::File::create(dir.join("lock")).expect("lock file");
    lock.lock().expect("lock the private PostgreSQL's directory");
    let bin = postgres_bin();
    let data = dir.join("data");
    let port_file = dir.join("port");
    if !data.join("PG_VERSION").is_file() {
        let _ = fs::remove_dir_all(&data);
        initdb(&bin, &dir, &data);
        fs::write(&port_file, free_port().to_string()).expect("write the port file");
    }
    let port: u16 = fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()).expect("the port file");
    let address = format!("127.0.0.1:{port}");
    if !answers(&address) {
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300", dir.display());
        let log = dir.join("postgres.log").to_string_lossy().into_owned();
        let data = data.to_string_lossy().into_owned();
        run_checked(
            as_postgres(&bin.join("pg_ctl")).args(["-D", &data, "start", "-w", "-t", "60", "-o", &options, "-l", &log]),
        );
    }
    address
}
