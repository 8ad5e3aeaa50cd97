//! `GET /v1/sync?since&limit&wait`: the user's timeline after a cursor, with long-poll.

use crate::error::ApiResult;
use crate::extract::{Auth, Query};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use feige_core::Feige;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

pub fn router() -> Router<Feige> {
    Router::new().route("/v1/sync", get(sync))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<u64>,
    limit: Option<u32>,
    wait: Option<u64>,
}

async fn sync(State(f): State<Feige>, Auth(who): Auth, Query(q): Query<SyncQuery>) -> ApiResult<Json<Value>> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(30));
    let page = f.sync(&who, q.since.unwrap_or(0), q.limit.unwrap_or(100), wait).await?;
    Ok(Json(json!({"events": page.events, "next": page.next, "has_more": page.has_more})))
}
