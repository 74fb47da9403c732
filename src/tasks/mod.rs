//! Rust task bodies named by `pipelines.yaml`. Each takes its task's generated
//! `Context` (declared connections, typed params and upstream outputs) and returns its
//! typed `Outputs`; rustc checks both against the YAML.

pub mod example;
mod games;
pub mod report;
pub mod scraper;
pub mod training;
