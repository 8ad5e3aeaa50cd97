//! `GET /v1/conversations` (with unread) and `POST /v1/conversations/{id}/read`.

use crate::error::ApiResult;
use crate::extract::{Auth, Json};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use feige_core::{ConversationId, Feige};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Feige> {
    Router::new()
        .route("/v1/conversations", get(list))
        .route("/v1/conversations/{id}/read", post(read))
}

async fn list(State(f): State<Feige>, Auth(who): Auth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        json!({"conversations": f.conversations(&who).await?}),
    ))
}

#[derive(Deserialize)]
struct ReadBody {
    seq: u64,
}

async fn read(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<ReadBody>,
) -> ApiResult<axum::Json<Value>> {
    let unread = f
        .mark_read(&who, ConversationId::parse(&id)?, b.seq)
        .await?;
    Ok(axum::Json(json!({"unread": unread})))
}
