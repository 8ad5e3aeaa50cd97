//! `GET /v1/conversations` (with unread), `POST /v1/conversations/{id}/read` and
//! `GET /v1/conversations/{id}/read-positions` (each member's read position, for groups).

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
        .route("/v1/conversations/{id}/read-positions", get(read_positions))
}

async fn read_positions(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let positions: Vec<Value> = f
        .read_positions(&who, ConversationId::parse(&id)?)
        .await?
        .into_iter()
        .map(|(user_id, read_seq)| json!({"user_id": user_id, "read_seq": read_seq}))
        .collect();
    Ok(axum::Json(json!({"positions": positions})))
}

async fn list(State(f): State<Feige>, Auth(who): Auth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(json!({"conversations": f.conversations(&who).await?})))
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
    let unread = f.mark_read(&who, ConversationId::parse(&id)?, b.seq).await?;
    Ok(axum::Json(json!({"unread": unread})))
}
