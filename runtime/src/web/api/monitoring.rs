//! `/health`, `/version` and the OpenAPI document.

use super::*;

pub(super) async fn version(_caller: Caller) -> ApiResult {
    ok(json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }))
}

/// This API's OpenAPI document (public, as Airflow serves its own).
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], include_str!("../openapi.yaml")).into_response()
}

pub(super) async fn import_errors(_caller: Caller) -> ApiResult {
    ok(json!({ "import_errors": [], "total_entries": 0 }))
}
