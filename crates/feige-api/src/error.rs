//! How errors leave the API: the status of the core error and
//! `{"error":{"code","message"}}`; 5xx details are logged here, once, and never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use feige_core::Error;
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, code = e.code(), "request failed");
        }
        let mut resp =
            (status, Json(json!({"error": {"code": e.code(), "message": e.public_message()}}))).into_response();
        if let Error::RateLimited { retry_after_secs } = e
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Unknown path.
pub async fn not_found() -> ApiError {
    ApiError(Error::not_found("not_found", "no such endpoint"))
}

/// Known path, wrong method.
pub async fn method_not_allowed() -> Response {
    let body = Json(json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this path"}}));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// A handler panicked: a bug. Answer 500 in the usual shape.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError(Error::internal("handler panicked")).into_response()
}
