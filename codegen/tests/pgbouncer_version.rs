//! The PgBouncer the tests start is the one the generated image builds: the same source
//! files (version and checksums in `scripts/install-test-deps.sh` and in the Dockerfile's
//! `pgbouncer-build` stage), and the binary on this machine reports that version. The
//! store's prepared statements need 1.21 or later, so a stock Debian bookworm 1.18 fails
//! here first, with the fix.

use std::path::Path;
use std::process::Command;

const INSTALL_HINT: &str = "run `bash scripts/install-test-deps.sh`, which builds it into /usr/sbin/pgbouncer";

fn repo_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `NAME="value"` assignments of the install script.
fn script_value(script: &str, name: &str) -> String {
    let prefix = format!("{name}=\"");
    script
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix('"')))
        .unwrap_or_else(|| panic!("scripts/install-test-deps.sh sets no {name}"))
        .to_string()
}

#[test]
fn tests_and_image_build_the_same_pgbouncer() {
    let script = repo_file("scripts/install-test-deps.sh");
    let dockerfile = repo_file("generated/Dockerfile");
    let build_stage = dockerfile
        .split("FROM ")
        .find(|stage| stage.contains("AS pgbouncer-build"))
        .expect("generated/Dockerfile has a `pgbouncer-build` stage");
    for name in [
        "PGBOUNCER_VERSION",
        "PGBOUNCER_SOURCE",
        "PGBOUNCER_SOURCE_SHA256",
        "PGBOUNCER_PATCHES",
        "PGBOUNCER_PATCHES_SHA256",
    ] {
        let value = script_value(&script, name);
        assert!(build_stage.contains(&value), "the image's PgBouncer build does not use {name} = {value}");
    }
}

#[test]
fn this_machines_pgbouncer_is_the_images_version() {
    let wanted = script_value(&repo_file("scripts/install-test-deps.sh"), "PGBOUNCER_VERSION");
    let out = Command::new("/usr/sbin/pgbouncer")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/sbin/pgbouncer ({e}): {INSTALL_HINT}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(first, format!("PgBouncer {wanted}"), "/usr/sbin/pgbouncer is not PgBouncer {wanted}: {INSTALL_HINT}");
}
