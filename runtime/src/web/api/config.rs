//! `/config`: the effective settings, by section, for Ops and Admins, as Airflow serves
//! its configuration: only when `SLUICE_EXPOSE_CONFIG` allows (else a 403 problem saying
//! how to allow it), secrets never (URLs masked, keys as set or not set), and with
//! `non-sensitive-only` not even that.

use super::*;
use crate::effective::{ExposeConfig, Setting};

/// How a sensitive setting reads under `non-sensitive-only`, as Airflow writes it.
const HIDDEN: &str = "< hidden >";

#[derive(Debug, Deserialize)]
pub(super) struct SectionQuery {
    section: Option<String>,
}

/// The settings the caller may read, or the 403 that says why not.
fn exposed<'a>(state: &'a AppState, caller: &Caller) -> Result<Vec<(&'a Setting, String)>, Problem> {
    caller.require(Role::Op)?;
    let shown = |s: &Setting| match (&s.value, state.config.expose) {
        (_, ExposeConfig::NonSensitiveOnly) if s.sensitive => HIDDEN.to_string(),
        (Value::String(text), _) => text.clone(),
        (other, _) => other.to_string(),
    };
    match state.config.expose {
        ExposeConfig::No => Err(Problem::forbidden(format!(
            "the configuration is not exposed: set {}=true (or non-sensitive-only) on the webserver",
            crate::effective::EXPOSE_CONFIG
        ))),
        _ => Ok(state.config.settings.iter().map(|s| (s, shown(s))).collect()),
    }
}

fn sections(settings: &[(&Setting, String)]) -> Vec<Value> {
    let mut names: Vec<&str> = Vec::new();
    for (s, _) in settings {
        if !names.contains(&s.section) {
            names.push(s.section);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let options: Vec<Value> = settings
                .iter()
                .filter(|(s, _)| s.section == name)
                .map(|(s, value)| json!({ "key": s.name, "value": value, "source": s.source }))
                .collect();
            json!({ "name": name, "options": options })
        })
        .collect()
}

pub(super) async fn get_config(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<SectionQuery>,
) -> ApiResult {
    let mut settings = exposed(&state, &caller)?;
    if let Some(section) = &query.section {
        settings.retain(|(s, _)| s.section == section);
        if settings.is_empty() {
            return Err(Problem::not_found(format!("section `{section}` not found")));
        }
    }
    ok(json!({ "sections": sections(&settings) }))
}

pub(super) async fn get_config_value(
    State(state): State<AppState>,
    caller: Caller,
    Path((section, option)): Path<(String, String)>,
) -> ApiResult {
    let settings = exposed(&state, &caller)?;
    let found: Vec<(&Setting, String)> =
        settings.into_iter().filter(|(s, _)| s.section == section && s.name == option).collect();
    if found.is_empty() {
        return Err(Problem::not_found(format!("option `[{section}] {option}` not found")));
    }
    ok(json!({ "sections": sections(&found) }))
}
