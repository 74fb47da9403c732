//! sluice-codegen: the pipeline compiler.
//!
//! `pipelines.yaml` is parsed with locations ([`parse`]), lowered into a typed model
//! ([`lower`], [`model`]), checked as a whole ([`validate`]) and, when clean, emitted as Rust
//! for `build.rs` and as deploy files for `generated/` ([`emit`]). [`plan`] compares the
//! committed lock file with the current YAML for reviews.

pub mod build;
pub mod diag;
pub mod emit;
pub mod feasibility;
pub mod graph;
pub mod lower;
pub mod model;
pub mod parse;
pub mod plan;
pub mod schedule;
pub mod source;
pub mod validate;

use diag::{Diagnostic, Diagnostics};
use model::Config;
use source::SourceFile;

/// A compiled `pipelines.yaml`: the validated model and the warnings found on the way.
#[derive(Debug)]
pub struct Compiled {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Parses, lowers and validates a file. `Err` holds every diagnostic (errors and
/// warnings) when at least one error was found.
pub fn compile(file: &SourceFile) -> Result<Compiled, Vec<Diagnostic>> {
    let root = parse::parse(file).map_err(|d| vec![d])?;
    let mut diags = Diagnostics::default();
    let mut config = lower::lower(&root, &mut diags);
    validate::validate(&config, file, &mut diags);
    if diags.has_errors() {
        return Err(diags.into_sorted());
    }
    config.canonicalize();
    Ok(Compiled { config, warnings: diags.into_sorted() })
}

/// [`compile`] for text in memory, named `name` in diagnostics.
pub fn compile_str(name: &str, yaml: &str) -> Result<Compiled, Vec<Diagnostic>> {
    compile(&SourceFile::new(name, yaml))
}
