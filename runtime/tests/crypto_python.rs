//! Fernet tokens made here decrypt in Python `cryptography` (what Airflow uses), and the other
//! way round, including Airflow's comma-separated `MultiFernet` key lists.
//!
//! Needs the test venv's Python with `cryptography`: `scripts/install-test-deps.sh` makes it.
//! Without it these tests fail (they never skip): interoperability is a promise of the design.

use sluice_runtime::crypto::Crypto;
use std::process::Command;

/// A secret with characters that trip naive encodings.
const SECRET: &str = "p@ss:w/rd?&=+ %é€😀\"'\\\n";

/// Runs `script` with the test venv's `python -c`, `env` in its environment; returns its stdout as is (the
/// scripts write without a trailing newline).
/// Secrets travel through the environment, not the command line.
fn python(script: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(sluice_testkit::venv::python())
        .arg("-c")
        .arg(format!("import os, sys\nfrom cryptography.fernet import Fernet, MultiFernet\n{script}"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the test venv's python ({e}): run scripts/install-test-deps.sh"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'cryptography") {
        panic!("the test venv has no `cryptography` package: run scripts/install-test-deps.sh");
    }
    assert!(output.status.success(), "python failed:\n{stderr}");
    String::from_utf8(output.stdout).expect("the scripts write UTF-8")
}

/// Python prints the decrypted text as UTF-8 bytes, so any secret survives the pipe.
const PY_DECRYPT: &str = "sys.stdout.buffer.write(MultiFernet([Fernet(k) for k in os.environ['KEYS'].split(',')])\
                          .decrypt(os.environ['TOKEN'].encode()))";
const PY_ENCRYPT: &str = "sys.stdout.write(MultiFernet([Fernet(k) for k in os.environ['KEYS'].split(',')])\
                          .encrypt(os.environ['PLAINTEXT'].encode()).decode())";

fn py_generate_key() -> String {
    python("sys.stdout.write(Fernet.generate_key().decode())", &[])
}

fn crypto(keys: &[&str]) -> Crypto {
    Crypto::from_env_value(Some(&keys.join(","))).expect("keys made by Fernet.generate_key are valid")
}

#[test]
fn python_decrypts_a_rust_token() {
    let key = Crypto::generate_key();
    let token = crypto(&[&key]).encrypt(SECRET).expect("a key is configured");
    let decrypted = python(PY_DECRYPT, &[("KEYS", &key), ("TOKEN", &token)]);
    assert_eq!(decrypted, SECRET);
}

#[test]
fn rust_decrypts_a_python_token() {
    let key = py_generate_key();
    let token = python(PY_ENCRYPT, &[("KEYS", &key), ("PLAINTEXT", SECRET)]);
    assert!(token.starts_with("gAAAAA"), "not a Fernet token: {token}");
    assert_eq!(crypto(&[&key]).decrypt(&token).expect("same key"), SECRET);
}

#[test]
fn keys_generated_on_either_side_work_on_the_other() {
    let rust_key = Crypto::generate_key();
    let python_checks = python("Fernet(os.environ['KEYS']); sys.stdout.write('ok')", &[("KEYS", &rust_key)]);
    assert_eq!(python_checks, "ok");
    let python_key = py_generate_key();
    assert_eq!(python_key.len(), rust_key.len());
    assert!(Crypto::from_env_value(Some(&python_key)).is_ok());
}

#[test]
fn two_key_lists_interoperate_in_both_directions() {
    let (old, new) = (py_generate_key(), Crypto::generate_key());
    let list = format!("{new},{old}");

    // Python's MultiFernet encrypts with the first key; Rust, given the same list or the
    // new key alone, decrypts.
    let py_token = python(PY_ENCRYPT, &[("KEYS", &list), ("PLAINTEXT", SECRET)]);
    assert_eq!(crypto(&[&new, &old]).decrypt(&py_token).expect("first key"), SECRET);
    assert_eq!(crypto(&[&new]).decrypt(&py_token).expect("made with the first key"), SECRET);
    assert!(crypto(&[&old]).decrypt(&py_token).is_err(), "the second key must not have been used");

    // A token made with the old key (before rotation) decrypts with the two-key list on
    // both sides; Rust's rotate moves it onto the new key, which Python alone reads.
    let old_token = python(PY_ENCRYPT, &[("KEYS", &old), ("PLAINTEXT", SECRET)]);
    let rust = crypto(&[&new, &old]);
    assert_eq!(rust.decrypt(&old_token).expect("old key is listed"), SECRET);
    let rotated = rust.rotate(&old_token).expect("old key is listed");
    let decrypted = python(PY_DECRYPT, &[("KEYS", &new), ("TOKEN", &rotated)]);
    assert_eq!(decrypted, SECRET);

    // And Python's MultiFernet.rotate gives a token Rust reads with the new key alone.
    let py_rotated = python(
        "sys.stdout.write(MultiFernet([Fernet(k) for k in os.environ['KEYS'].split(',')])\
         .rotate(os.environ['TOKEN'].encode()).decode())",
        &[("KEYS", &list), ("TOKEN", &old_token)],
    );
    assert_eq!(crypto(&[&new]).decrypt(&py_rotated).expect("rotated onto the new key"), SECRET);

    // A Rust token made with the list decrypts in Python with the list.
    let rust_token = rust.encrypt(SECRET).expect("a key is configured");
    let decrypted = python(PY_DECRYPT, &[("KEYS", &list), ("TOKEN", &rust_token)]);
    assert_eq!(decrypted, SECRET);
}
