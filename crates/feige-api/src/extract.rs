//! Extractors whose rejections speak Feige's error shape: a bearer identity, JSON bodies and
//! query strings.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use feige_core::usecases::Identity;
use feige_core::{Error, Feige};
use serde::de::DeserializeOwned;

/// The caller, from `Authorization: Bearer <access_token>`.
pub struct Auth(pub Identity);

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<Feige> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, feige: &Feige) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| Error::unauthorized("missing_token", "an Authorization: Bearer token is required"))?;
        Ok(Auth(feige.authenticate(token).await?))
    }
}

/// A JSON body. Any content type is accepted; the body must parse into `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge
            } else {
                Error::bad_request("invalid_body", rej.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError(Error::bad_request("invalid_json", format!("invalid JSON body: {e}"))))
    }
}

/// A query string parsed into `T`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rej| ApiError(Error::bad_request("invalid_query", rej.body_text())))
    }
}
