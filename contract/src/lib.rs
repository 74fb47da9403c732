//! The vocabulary `sluice-codegen` and `sluice-runtime` both speak, written once: the
//! compiler checks pipelines against it at build time and the runtime acts on it, so the
//! two cannot drift apart. No dependencies (serde only behind the `serde` feature, which the
//! compiler's lock file needs): the user's build script compiles it too.
//!
//! codegen → contract ← runtime; codegen and runtime never depend on each other.

pub mod defaults;
pub mod env;
pub mod graph;
pub mod ident;
pub mod outputs;
pub mod rules;
pub mod secrets;
pub mod settings;
pub mod spec;
pub mod template;
