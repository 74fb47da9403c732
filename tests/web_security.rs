//! The web server's defences, attacked from outside against a real `sluice standalone`
//! (and `sluice webserver`, `sluice init`), with the CLI run beside it as an operator runs
//! it: sessions end when the users table says so, logout is a POST with the CSRF token,
//! every answer carries the security headers, short passwords are refused everywhere, the
//! webserver needs the shared session key, and standalone keeps the keys it made in its
//! home.

use reqwest::StatusCode;
use sluice_testkit::process::free_port;
use sluice_testkit::standalone::Standalone;
use std::path::Path;
use std::process::{Command, Output};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "web-security-admin-pw";
const FERNET_KEY: &str = "c2x1aWNlLXdlYi1zZWN1cml0eS1jaGVjay1rZXktMzI=";
const FORM: &str = "application/x-www-form-urlencoded";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice <args>` with `SLUICE_HOME=home`, `env`, and nothing else of the test's
/// environment that Sluice reads.
fn sluice(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("SLUICE_") || name.starts_with("AIRFLOW_") {
            command.env_remove(&var);
        }
    }
    command.args(args).env("SLUICE_HOME", home).envs(env.iter().copied());
    command.output().expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; its stdout.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail with one `error: ` sentence; that sentence.
fn fails(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{}\nstderr:\n{stderr}", text(&out.stdout));
    assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "one sentence: {stderr}");
    stderr
}

/// A browser's view of the site: no redirects followed, cookies passed by hand.
struct Site {
    base: String,
    client: reqwest::Client,
}

impl Site {
    fn of(standalone: &Standalone) -> Site {
        let client = sluice_runtime::tls::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Site { base: format!("http://127.0.0.1:{}", standalone.port), client }
    }

    async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.expect("response")
    }

    async fn post(&self, cookie: &str, path: &str, body: String) -> reqwest::Response {
        let request = self.client.post(format!("{}{path}", self.base)).header("cookie", cookie);
        request.header("content-type", FORM).body(body).send().await.expect("response")
    }

    /// Signs in through the login form; the session cookie (`name=value`).
    async fn sign_in(&self, user: &str, password: &str) -> String {
        let form = self.client.get(format!("{}/login", self.base)).send().await.expect("response");
        let login_cookie = first_cookie(&form);
        let token = csrf(&form.text().await.expect("html"));
        let signed =
            self.post(&login_cookie, "/login", format!("csrf={token}&username={user}&password={password}")).await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER, "{user} signs in");
        first_cookie(&signed)
    }

    /// The CSRF token of a signed-in page.
    async fn csrf(&self, cookie: &str, path: &str) -> String {
        csrf(&self.get(cookie, path).await.text().await.expect("html"))
    }
}

fn first_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get("set-cookie").and_then(|c| c.to_str().ok()).expect("a Set-Cookie");
    set.split(';').next().expect("name=value").to_string()
}

fn csrf(html: &str) -> String {
    html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("a csrf token").to_string()
}

/// Where a page sent the browser (`None`: it was shown).
fn location(response: &reqwest::Response) -> Option<&str> {
    response.headers().get("location").and_then(|l| l.to_str().ok())
}

#[tokio::test]
async fn the_cli_ends_sessions_by_deleting_or_resetting_a_user() {
    let standalone = Standalone::start(binary(), ADMIN, ADMIN_PASSWORD, FERNET_KEY);
    let (site, home) = (Site::of(&standalone), standalone.home());
    let create = ["users", "create", "-u", "ada", "-e", "ada@example.com", "-r", "User", "-p"];
    let err = fails(sluice(home, &[], &[&create[..], &["1234567"]].concat()));
    assert!(err.contains("at least 8 characters"), "{err}");
    ok(sluice(home, &[], &[&create[..], &["ada-password-1"]].concat()));

    let cookie = site.sign_in("ada", "ada-password-1").await;
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK);
    assert_eq!(site.get(&cookie, "/api/v1/dags").await.status(), StatusCode::OK);
    // A refused reset changes nothing.
    let err = fails(sluice(home, &[], &["users", "reset-password", "-u", "ada", "-p", "short"]));
    assert!(err.contains("at least 8 characters"), "{err}");
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK);

    ok(sluice(home, &[], &["users", "reset-password", "-u", "ada", "-p", "ada-password-2"]));
    let page = site.get(&cookie, "/").await;
    assert_eq!((page.status(), location(&page)), (StatusCode::SEE_OTHER, Some("/login")), "a reset ends the session");
    assert_eq!(site.get(&cookie, "/api/v1/dags").await.status(), StatusCode::UNAUTHORIZED);

    let cookie = site.sign_in("ada", "ada-password-2").await;
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK);
    ok(sluice(home, &[], &["users", "delete", "-u", "ada"]));
    let page = site.get(&cookie, "/").await;
    assert_eq!((page.status(), location(&page)), (StatusCode::SEE_OTHER, Some("/login")), "a deleted user is out");
    assert_eq!(site.get(&cookie, "/api/v1/dags").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_demoting_a_user_and_short_passwords_in_the_users_form() {
    let standalone = Standalone::start(binary(), ADMIN, ADMIN_PASSWORD, FERNET_KEY);
    let (site, home) = (Site::of(&standalone), standalone.home());
    ok(sluice(home, &[], &["users", "create", "-u", "olga", "-e", "o@example.com", "-r", "Op", "-p", "olga-password"]));
    let olga = site.sign_in("olga", "olga-password").await;
    assert_eq!(site.get(&olga, "/connections").await.status(), StatusCode::OK, "an Op sees connections");
    assert_eq!(site.get(&olga, "/api/v1/connections").await.status(), StatusCode::OK);

    let admin = site.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let token = site.csrf(&admin, "/users").await;
    let demoted = site.post(&admin, "/users/olga/role", format!("csrf={token}&role=Viewer")).await;
    assert_eq!(demoted.status(), StatusCode::SEE_OTHER);
    let page = site.get(&olga, "/connections").await;
    assert_eq!(location(&page), Some("/login"), "demoted: the old session is gone at once");
    assert_eq!(site.get(&olga, "/api/v1/connections").await.status(), StatusCode::UNAUTHORIZED);
    let olga = site.sign_in("olga", "olga-password").await;
    assert_eq!(site.get(&olga, "/connections").await.status(), StatusCode::FORBIDDEN, "now a Viewer");

    let short =
        site.post(&admin, "/users", format!("csrf={token}&username=sam&email=&role=Viewer&password=1234567")).await;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    assert!(short.text().await.expect("html").contains("at least 8 characters"));
    let users = ok(sluice(home, &[], &["users", "list", "-o", "json"]));
    assert!(!users.contains("\"sam\""), "not created: {users}");
}

#[tokio::test]
async fn logout_is_a_post_with_the_csrf_token() {
    let standalone = Standalone::start(binary(), ADMIN, ADMIN_PASSWORD, FERNET_KEY);
    let site = Site::of(&standalone);
    let cookie = site.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let token = site.csrf(&cookie, "/").await;

    let shown = site.get(&cookie, "/logout").await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert!(shown.headers().get("set-cookie").is_none(), "GET /logout drops no cookie");
    assert!(shown.text().await.expect("html").contains(r#"<form id="logout-form" method="post" action="/logout">"#));
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK, "still signed in after GET /logout");

    for forged in [String::new(), "csrf=".into(), "csrf=0123456789abcdef0123456789abcdef".into()] {
        let refused = site.post(&cookie, "/logout", forged.clone()).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "POST /logout with `{forged}`");
    }
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK, "still signed in");

    let out = site.post(&cookie, "/logout", format!("csrf={token}")).await;
    assert_eq!((out.status(), location(&out)), (StatusCode::SEE_OTHER, Some("/login")));
    assert!(out.headers()["set-cookie"].to_str().is_ok_and(|c| c.contains("Max-Age=0")));
    let replayed = site.get(&cookie, "/").await;
    assert_eq!(location(&replayed), Some("/login"), "a kept copy of the cookie is worthless after logout");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let standalone = Standalone::start(binary(), ADMIN, ADMIN_PASSWORD, FERNET_KEY);
    let site = Site::of(&standalone);
    let cookie = site.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let answers = [
        ("a UI page", site.get(&cookie, "/dags/example_dag").await, 200),
        ("an API answer", site.get(&cookie, "/api/v1/dags").await, 200),
        ("a page that does not exist", site.get(&cookie, "/no/such/page").await, 404),
        ("an API route that does not exist", site.get(&cookie, "/api/v1/nope").await, 404),
        ("an anonymous API call", site.get("", "/api/v1/dags").await, 401),
        ("/health", site.get("", "/health").await, 200),
    ];
    for (what, answer, status) in &answers {
        assert_eq!(answer.status().as_u16(), *status, "{what}");
        let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("(none)");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{what}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert!(["same-origin", "no-referrer"].contains(&header("referrer-policy")), "{what}");
    }
}

#[test]
fn a_short_admin_password_in_the_environment_stops_standalone_and_init() {
    let home = tempfile::tempdir().expect("temp home");
    let env = [("SLUICE_ADMIN_PASSWORD", "admin12")];
    let Err((status, log)) = Standalone::launch(binary(), home.path(), &env) else {
        panic!("standalone started with a 7-character admin password");
    };
    assert!(!status.success(), "{status}");
    let error: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error.len(), 1, "{log}");
    assert!(error[0].contains("SLUICE_ADMIN_PASSWORD") && error[0].contains("at least 8 characters"), "{log}");
    assert!(!log.contains("admin12"), "the password is not repeated: {log}");

    let init = tempfile::tempdir().expect("temp home");
    let err = fails(sluice(init.path(), &[("SLUICE_ADMIN_PASSWORD", "short")], &["init"]));
    assert!(err.contains("SLUICE_ADMIN_PASSWORD") && err.contains("at least 8 characters"), "{err}");
}

#[test]
fn the_webserver_needs_the_shared_session_key() {
    let home = tempfile::tempdir().expect("temp home");
    let database = format!("sqlite://{}", home.path().join("web.sqlite").display());
    let port = free_port().to_string();
    let env = [("SLUICE_DATABASE_URL", database.as_str()), ("SLUICE_WEBSERVER_PORT", port.as_str())];
    let err = fails(sluice(home.path(), &env, &["webserver"]));
    assert!(err.contains("SLUICE_SECRET_KEY is not set"), "{err}");
    let err = fails(sluice(home.path(), &[env[0], env[1], ("SLUICE_SECRET_KEY", "")], &["webserver"]));
    assert!(err.contains("SLUICE_SECRET_KEY is not set"), "an empty key is no key: {err}");
}

#[tokio::test]
async fn standalone_makes_its_keys_once_and_keeps_them_in_its_home() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("temp home");
    let admin = [("SLUICE_ADMIN_USERNAME", ADMIN), ("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let first = Standalone::launch(binary(), home.path(), &admin).unwrap_or_else(|(s, log)| panic!("{s}:\n{log}"));
    let keys = ["fernet.key", "secret.key"].map(|name| home.path().join(name));
    let made: Vec<String> = keys.iter().map(|k| std::fs::read_to_string(k).expect("a key file")).collect();
    for key in &keys {
        let mode = std::fs::metadata(key).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} is for its owner only", key.display());
    }

    // A connection with a password works out of the box: the key is there.
    let site = Site::of(&first);
    let connection =
        r#"{"connection_id": "vault", "conn_type": "http", "host": "vault.example", "password": "vault-pw-42"}"#;
    let added = site
        .client
        .post(format!("{}/api/v1/connections", site.base))
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body(connection)
        .send()
        .await
        .expect("response");
    assert_eq!(added.status(), StatusCode::OK, "{}", added.text().await.unwrap_or_default());
    let cookie = site.sign_in(ADMIN, ADMIN_PASSWORD).await;
    drop(first);

    let second = Standalone::launch(binary(), home.path(), &admin).unwrap_or_else(|(s, log)| panic!("{s}:\n{log}"));
    let again: Vec<String> = keys.iter().map(|k| std::fs::read_to_string(k).expect("a key file")).collect();
    assert_eq!(again, made, "the keys are kept, not made again");
    let site = Site::of(&second);
    assert_eq!(site.get(&cookie, "/").await.status(), StatusCode::OK, "the session key survived the restart");
    let shown = site
        .client
        .get(format!("{}/api/v1/connections/vault", site.base))
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(shown.status(), StatusCode::OK);
    assert!(!shown.text().await.expect("json").contains("vault-pw-42"), "the API never shows the password");
    let database = std::fs::read(home.path().join("sluice.sqlite")).expect("the database");
    assert!(!database.windows(11).any(|w| w == b"vault-pw-42"), "the password is encrypted at rest");

    // The CLI beside it reads the key from the home: the password decrypts.
    let exported = home.path().join("connections.json");
    ok(sluice(home.path(), &[], &["connections", "export", &exported.display().to_string()]));
    let file = std::fs::read_to_string(&exported).expect("exported");
    assert!(file.contains("vault-pw-42"), "{file}");
    // The environment wins over the file: another key cannot read what this one sealed.
    let other = ok(sluice(home.path(), &[], &["fernet", "generate"]));
    let again = home.path().join("again.json");
    let args = ["connections", "export", &again.display().to_string()];
    let err = fails(sluice(home.path(), &[("SLUICE_FERNET_KEY", other.trim())], &args));
    assert!(err.contains("SLUICE_FERNET_KEY") && !err.contains("vault-pw-42"), "{err}");
}

#[test]
fn healthcheck_webserver_asks_the_running_web_server() {
    let standalone = Standalone::start(binary(), ADMIN, ADMIN_PASSWORD, FERNET_KEY);
    let port = standalone.port.to_string();
    let healthy = sluice(standalone.home(), &[("SLUICE_WEBSERVER_PORT", &port)], &["healthcheck", "webserver"]);
    assert_eq!(ok(healthy), "", "a health check prints nothing when healthy");
    drop(standalone);
    let home = tempfile::tempdir().expect("home");
    let gone = sluice(home.path(), &[("SLUICE_WEBSERVER_PORT", &port)], &["healthcheck", "webserver"]);
    assert!(fails(gone).contains(&format!("http://127.0.0.1:{port}/health does not answer")));
}
