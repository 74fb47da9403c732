//! `pipelines.lock.json`: the canonical compiled model, for reviews and `plan`.

use crate::model::Config;
use serde::{Deserialize, Serialize};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Lock {
    #[serde(rename = "@generated")]
    pub generated: String,
    pub version: u32,
    #[serde(flatten)]
    pub config: Config,
}

pub fn render(config: &Config, source: &str) -> String {
    let lock = Lock {
        generated: format!("by sluice-codegen from {source} — do not edit"),
        version: LOCK_VERSION,
        config: config.clone(),
    };
    // The model is plain data (strings, numbers, maps with string keys): cannot fail.
    let mut text = serde_json::to_string_pretty(&lock).unwrap_or_default();
    text.push('\n');
    text
}

pub fn parse(text: &str) -> Result<Lock, serde_json::Error> {
    serde_json::from_str(text)
}
