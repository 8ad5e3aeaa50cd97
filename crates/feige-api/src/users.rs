//! `GET /v1/users/me`, `GET /v1/users/{user_id}`.

use crate::error::ApiResult;
use crate::extract::Auth;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use feige_core::model::User;
use feige_core::{Feige, UserId};

pub fn router() -> Router<Feige> {
    Router::new().route("/v1/users/me", get(me)).route("/v1/users/{user_id}", get(by_id))
}

async fn me(State(f): State<Feige>, Auth(who): Auth) -> ApiResult<Json<User>> {
    Ok(Json(f.user(who.user_id).await?))
}

async fn by_id(State(f): State<Feige>, Auth(_): Auth, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(f.user(UserId::parse(&id)?).await?))
}
