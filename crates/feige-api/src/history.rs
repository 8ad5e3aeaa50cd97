//! `GET /v1/conversations/{id}/messages?before&limit`: roam a conversation's history, newest
//! first.

use crate::error::ApiResult;
use crate::extract::{Auth, Query};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use feige_core::{ConversationId, Feige};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Feige> {
    Router::new().route("/v1/conversations/{id}/messages", get(history))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<u32>,
}

async fn history(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let (messages, has_more) = f.history(&who, ConversationId::parse(&id)?, q.before, q.limit.unwrap_or(50)).await?;
    Ok(Json(json!({"messages": messages, "has_more": has_more})))
}
