//! `/healthz` (alive), `/readyz` (every backend answers), `/metrics` (Prometheus text) and
//! `/openapi.json`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use feige_core::Feige;
use serde_json::{Map, Value, json};

pub fn router() -> Router<Feige> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(f): State<Feige>) -> impl IntoResponse {
    let mut backends = Map::new();
    let mut ready = true;
    for (name, res) in f.readiness().await {
        let v = match res {
            Ok(()) => json!("ok"),
            Err(e) => {
                ready = false;
                json!({"error": e.public_message()})
            }
        };
        backends.insert(name.to_owned(), v);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"status": if ready { "ready" } else { "unavailable" }, "backends": backends})))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::handle().render())
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::spec())
}
