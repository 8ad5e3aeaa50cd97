//! `POST /v1/messages`: send to a user or a group; `POST /v1/messages/{msg_id}/recall`.

use crate::error::ApiResult;
use crate::extract::{Auth, Json};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use feige_core::usecases::{SendRequest, SendResult, Target};
use feige_core::{Error, Feige, GroupId, UserId};
use serde::Deserialize;
use serde_json::Value;

pub fn router() -> Router<Feige> {
    Router::new().route("/v1/messages", post(send)).route("/v1/messages/{msg_id}/recall", post(recall))
}

async fn recall(
    State(f): State<Feige>,
    Auth(who): Auth,
    axum::extract::Path(msg_id): axum::extract::Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let m = f.recall(&who, &msg_id).await?;
    Ok(axum::Json(
        serde_json::json!({"msg_id": m.msg_id, "conversation_id": m.conversation_id, "conv_seq": m.conv_seq, "recalled": true}),
    ))
}

#[derive(Deserialize)]
struct To {
    kind: String,
    id: i64,
}

#[derive(Deserialize)]
struct SendBody {
    client_msg_id: String,
    to: To,
    #[serde(rename = "type")]
    kind: String,
    body: Value,
}

async fn send(
    State(f): State<Feige>,
    Auth(who): Auth,
    Json(b): Json<SendBody>,
) -> ApiResult<(StatusCode, axum::Json<SendResult>)> {
    let id = b.to.id.to_string();
    let to = match b.to.kind.as_str() {
        "user" => Target::User(UserId::parse(&id)?),
        "group" => Target::Group(GroupId::parse(&id)?),
        _ => {
            return Err(Error::bad_request("invalid_recipient", "to.kind must be \"user\" or \"group\"").into());
        }
    };
    let res = f.send(&who, SendRequest { client_msg_id: b.client_msg_id, to, kind: b.kind, body: b.body }).await?;
    let status = if res.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(res)))
}
