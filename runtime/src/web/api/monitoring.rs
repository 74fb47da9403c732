//! `/health`, `/version`, the OpenAPI document, and what a compiled system has none of:
//! import errors, plugins, providers, files to re-parse.

use super::*;

/// Public, as Airflow's `/version` is: it names no data.
pub(super) async fn version() -> ApiResult {
    ok(json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }))
}

/// This API's OpenAPI document (public, as Airflow serves its own).
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], include_str!("../openapi.yaml")).into_response()
}

pub(super) async fn import_errors(_caller: Caller) -> ApiResult {
    ok(json!({ "import_errors": [], "total_entries": 0 }))
}

pub(super) async fn import_error(_caller: Caller, Path(id): Path<i64>) -> ApiResult {
    Err(Problem::not_found(format!("import error {id} not found: pipelines are compiled, so none are recorded")))
}

/// No plugins: a Sluice binary carries what it runs.
pub(super) async fn plugins(_caller: Caller, Params(page): Params<Page>) -> ApiResult {
    page.limit()?;
    page.offset()?;
    ok(json!({ "plugins": [], "total_entries": 0 }))
}

/// No providers: connection kinds are built in.
pub(super) async fn providers(_caller: Caller) -> ApiResult {
    ok(json!({ "providers": [], "total_entries": 0 }))
}

/// Nothing is parsed at run time: a known file token (a pipeline's id) is accepted as
/// Airflow accepts one, with 201 and nothing else to do.
pub(super) async fn reparse_dag_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(file_token): Path<String>,
) -> ApiResult {
    caller.require(Role::User)?;
    if state.registry.pipeline(&file_token).is_none() {
        return Err(Problem::not_found(format!("file token `{file_token}` names no pipeline")));
    }
    Ok(StatusCode::CREATED.into_response())
}
