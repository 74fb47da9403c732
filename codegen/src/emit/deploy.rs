//! Deploy files: docker-compose, PgBouncer and Redis configs, .env example, Dockerfile.
use super::GeneratedFile;
use crate::model::Config;

pub fn render(_config: &Config, _source: &str) -> Result<Vec<GeneratedFile>, minijinja::Error> {
    Ok(Vec::new())
}
