//! sluice-codegen: the pipeline compiler.
//!
//! `pipelines.yaml` is parsed with locations ([`parse`]), lowered into a typed model
//! ([`lower`], [`model`]), checked as a whole ([`validate`]) and, when clean, emitted as Rust
//! for `build.rs` and as deploy files for `generated/` ([`emit`]). [`plan`] compares the
//! committed lock file with the current YAML for reviews.

pub mod diag;
pub mod emit;
pub mod model;
pub mod parse;
pub mod source;

#[cfg(test)]
mod parse_probe {
    #[test]
    fn probe() {
        let f = crate::source::SourceFile::new("x.yaml", "a: 1\nb:\n  - x\n  - {c: d}\nb: 2\n");
        let n = crate::parse::parse(&f).unwrap();
        println!("{n:#?}");
    }
}
