//! `/v1/groups…`: create, list, info, members, invite, kick/leave, rename/announce, disband,
//! admin grant/revoke and ownership transfer. Permissions are checked in the use cases.

use crate::error::ApiResult;
use crate::extract::{Auth, Json};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use feige_core::model::Group;
use feige_core::{Feige, GroupId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Feige> {
    Router::new()
        .route("/v1/groups", post(create).get(list))
        .route("/v1/groups/{id}", get(info).patch(update).delete(disband))
        .route("/v1/groups/{id}/members", get(members).post(invite))
        .route("/v1/groups/{id}/members/{user_id}", delete(remove))
        .route("/v1/groups/{id}/admins", post(grant_admin))
        .route("/v1/groups/{id}/admins/{user_id}", delete(revoke_admin))
        .route("/v1/groups/{id}/owner", post(transfer))
}

fn group_json(g: &Group) -> Value {
    json!({
        "group_id": g.group_id,
        "name": g.name,
        "announcement": g.announcement,
        "owner_id": g.owner_id,
        "member_count": g.member_count,
        "conversation_id": g.conversation_id,
        "created_at": g.created_at,
    })
}

fn ids(raw: &[i64]) -> Result<Vec<UserId>, crate::ApiError> {
    raw.iter().map(|i| UserId::parse(&i.to_string()).map_err(Into::into)).collect()
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    members: Vec<i64>,
}

async fn create(
    State(f): State<Feige>,
    Auth(who): Auth,
    Json(b): Json<CreateBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (g, members) = f.create_group(&who, &b.name, &ids(&b.members)?).await?;
    let mut body = group_json(&g);
    body["members"] = json!(members.iter().map(|m| m.user_id).collect::<Vec<_>>());
    Ok((StatusCode::CREATED, axum::Json(body)))
}

async fn list(State(f): State<Feige>, Auth(who): Auth) -> ApiResult<axum::Json<Value>> {
    let groups: Vec<Value> = f.my_groups(&who).await?.iter().map(group_json).collect();
    Ok(axum::Json(json!({"groups": groups})))
}

async fn info(State(f): State<Feige>, Auth(who): Auth, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    let (g, role) = f.group_info(&who, GroupId::parse(&id)?).await?;
    let mut body = group_json(&g);
    body["my_role"] = json!(role);
    Ok(axum::Json(body))
}

async fn members(State(f): State<Feige>, Auth(who): Auth, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(json!({"members": f.group_members(&who, GroupId::parse(&id)?).await?})))
}

#[derive(Deserialize)]
struct InviteBody {
    user_ids: Vec<i64>,
}

async fn invite(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<InviteBody>,
) -> ApiResult<axum::Json<Value>> {
    let added = f.invite(&who, GroupId::parse(&id)?, &ids(&b.user_ids)?).await?;
    Ok(axum::Json(json!({"added": added})))
}

async fn remove(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    f.remove_member(&who, GroupId::parse(&id)?, UserId::parse(&user)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    announcement: Option<String>,
}

async fn update(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<UpdateBody>,
) -> ApiResult<axum::Json<Value>> {
    let g = f.update_group(&who, GroupId::parse(&id)?, b.name.as_deref(), b.announcement.as_deref()).await?;
    Ok(axum::Json(group_json(&g)))
}

async fn disband(State(f): State<Feige>, Auth(who): Auth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    f.disband(&who, GroupId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct UserBody {
    user_id: i64,
}

async fn grant_admin(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<UserBody>,
) -> ApiResult<StatusCode> {
    f.set_admin(&who, GroupId::parse(&id)?, UserId::parse(&b.user_id.to_string())?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_admin(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    f.set_admin(&who, GroupId::parse(&id)?, UserId::parse(&user)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn transfer(
    State(f): State<Feige>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(b): Json<UserBody>,
) -> ApiResult<StatusCode> {
    f.transfer_ownership(&who, GroupId::parse(&id)?, UserId::parse(&b.user_id.to_string())?).await?;
    Ok(StatusCode::NO_CONTENT)
}
