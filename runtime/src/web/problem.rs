//! Errors of the REST API as RFC 7807 problem documents, the shape Airflow's API and its
//! clients use: `{"type", "title", "status", "detail"}` with `application/problem+json`.

use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A failed request: its status and one sentence saying what is wrong.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem { status, detail: detail.into(), headers: Vec::new() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Problem {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }
}

/// What a failed store call means to a web caller, its status and one sentence: the one
/// mapping behind the API's problems and the UI's error pages.
pub fn store_failure(e: StoreError) -> (StatusCode, String) {
    match e {
        StoreError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
        StoreError::Conflict(what) => (StatusCode::CONFLICT, what),
        other => {
            tracing::warn!("web request failed: {other}");
            (StatusCode::SERVICE_UNAVAILABLE, "the metadata database is not available; try again".into())
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        let (status, detail) = store_failure(e);
        Problem::new(status, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = serde_json::json!({
            "type": format!("https://airflow.apache.org/docs/apache-airflow/2.10.0/stable-rest-api-ref.html#section/Errors/{}", title.replace(' ', "")),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
