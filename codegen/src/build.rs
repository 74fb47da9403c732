//! Entry points for `build.rs` and the `sluice-codegen` command: compile a file and
//! write what it produces, touching only files whose bytes changed.

use crate::diag::{self, Diagnostic};
use crate::emit::{self, GeneratedFile};
use crate::source::SourceFile;
use crate::{Compiled, compile};
use std::path::Path;
use std::{fs, io};

/// For a crate's `build.rs`: compiles `yaml` (relative to the crate root) into
/// `$OUT_DIR/pipelines.rs`. Diagnostics are printed and the build fails on errors.
pub fn compile_pipelines(yaml: &str) {
    println!("cargo:rerun-if-changed={yaml}");
    let file = match read_source(Path::new(yaml)) {
        Ok(file) => file,
        Err(message) => fail(&message),
    };
    let compiled = match compile(&file) {
        Ok(compiled) => compiled,
        Err(diagnostics) => {
            eprint!("{}", diag::render_human(&file, &diagnostics, false));
            if let Some(summary) = diag::summary(&file, &diagnostics) {
                eprintln!("{summary}");
            }
            fail(&format!("{yaml} has errors; fix them and build again (`cargo make check` lists them)"));
        }
    };
    for w in &compiled.warnings {
        println!("cargo:warning={}:{}:{}: {} [{}]", file.name, w.span.line, w.span.col, w.message, w.code);
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        fail("OUT_DIR is not set: compile_pipelines must run from a cargo build script");
    };
    let rust = GeneratedFile {
        path: "pipelines.rs".into(),
        contents: emit::rust::render(&compiled.config, &file, &compiled.warnings),
    };
    if let Err(e) = write_if_changed(Path::new(&out_dir), &rust) {
        fail(&format!("cannot write {}: {e}", rust.path));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Reads a pipelines file, with a message that says what to do when it cannot.
pub fn read_source(path: &Path) -> Result<SourceFile, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(SourceFile::from_disk(path, text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(format!("{} not found; run from the project root or pass `--file PATH`", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Every file of `generated/` for a compiled config (deploy files, Kubernetes manifests and
/// the lock).
pub fn generated_files(compiled: &Compiled, source: &str) -> Result<Vec<GeneratedFile>, String> {
    let mut files = emit::deploy::render(&compiled.config, source).map_err(|e| format!("deploy templates: {e}"))?;
    files.extend(emit::kubernetes::render(&compiled.config, source).map_err(|e| format!("kubernetes templates: {e}"))?);
    files.extend(emit::python::render(&compiled.config, source));
    files.push(GeneratedFile {
        path: "pipelines.lock.json".into(),
        contents: emit::lock::render(&compiled.config, source),
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Writes `file` under `dir` unless it already has these bytes. Returns whether it wrote.
pub fn write_if_changed(dir: &Path, file: &GeneratedFile) -> io::Result<bool> {
    let path = dir.join(&file.path);
    if fs::read(&path).is_ok_and(|old| old == file.contents.as_bytes()) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, &file.contents)?;
    Ok(true)
}

/// The files under `dir` that differ from what would be generated.
pub fn stale_files(dir: &Path, files: &[GeneratedFile]) -> Vec<String> {
    files
        .iter()
        .filter(|f| fs::read(dir.join(&f.path)).map_or(true, |old| old != f.contents.as_bytes()))
        .map(|f| f.path.clone())
        .collect()
}

/// Diagnostics as the CLI prints them.
pub fn report(file: &SourceFile, diagnostics: &[Diagnostic], json: bool, color: bool) -> String {
    if json {
        return diag::render_json(file, diagnostics) + "\n";
    }
    let mut out = diag::render_human(file, diagnostics, color);
    if let Some(summary) = diag::summary(file, diagnostics) {
        out.push_str(&summary);
        out.push('\n');
    }
    out
}
