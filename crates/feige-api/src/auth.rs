//! `POST /v1/auth/{register,login,refresh,logout}`.

use crate::error::ApiResult;
use crate::extract::{Auth, Json};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use feige_core::Feige;
use feige_core::model::User;
use feige_core::usecases::{LoginResult, Tokens};
use serde::Deserialize;

pub fn router() -> Router<Feige> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
}

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
    password: String,
    nickname: Option<String>,
}

async fn register(State(f): State<Feige>, Json(b): Json<RegisterBody>) -> ApiResult<(StatusCode, axum::Json<User>)> {
    let user = f.register(&b.username, &b.password, b.nickname.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    device_id: Option<String>,
    platform: Option<String>,
}

async fn login(State(f): State<Feige>, Json(b): Json<LoginBody>) -> ApiResult<axum::Json<LoginResult>> {
    Ok(axum::Json(f.login(&b.username, &b.password, b.device_id.as_deref(), b.platform.as_deref()).await?))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(f): State<Feige>, Json(b): Json<RefreshBody>) -> ApiResult<axum::Json<Tokens>> {
    Ok(axum::Json(f.refresh(&b.refresh_token).await?))
}

async fn logout(State(f): State<Feige>, Auth(who): Auth) -> ApiResult<StatusCode> {
    f.logout(&who).await?;
    Ok(StatusCode::NO_CONTENT)
}
