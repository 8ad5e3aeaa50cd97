//! The node-to-node listener (`FEIGE_INTERNAL_LISTEN`): other push nodes forward pushes for
//! sockets held here (`POST /internal/v1/push`, a JSON array of pushes, bearer = the shared
//! internal secret). It is not exposed through the public load balancer.

use crate::hub::Hub;
use crate::route::FORWARD_PATH;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use feige_core::model::Push;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest forwarded batch accepted (a full consumer batch of the largest messages).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct Internal {
    hub: Arc<Hub>,
    secret: Arc<str>,
}

/// Byte-wise comparison whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(s): State<Internal>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(token.as_bytes(), s.secret.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(pushes) = serde_json::from_slice::<Vec<Push>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    s.hub.deliver_local(&pushes);
    metrics::counter!("feige_push_forwarded_received_total").increment(pushes.len() as u64);
    StatusCode::NO_CONTENT
}

/// The internal routes.
pub fn router(hub: Arc<Hub>, secret: &str) -> Router {
    Router::new()
        .route(FORWARD_PATH, post(receive))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(Internal { hub, secret: Arc::from(secret) })
}

/// Binds `listen`, serves the internal routes until `shutdown`, and returns the address other
/// nodes should use: `advertise`, or the bound address when that is a concrete one.
pub async fn serve(
    listen: &str,
    advertise: Option<&str>,
    hub: Arc<Hub>,
    secret: &str,
    shutdown: CancellationToken,
) -> std::io::Result<String> {
    let listener = feige_api::bind(listen).await?;
    let bound: SocketAddr = listener.local_addr()?;
    let advertised = match advertise {
        Some(a) => a.to_owned(),
        None if bound.ip().is_unspecified() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "FEIGE_INTERNAL_LISTEN={listen} is a wildcard: set FEIGE_INTERNAL_ADVERTISE to this node's reachable host:port"
                ),
            ));
        }
        None => bound.to_string(),
    };
    let app = router(hub, secret);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "internal listener failed");
        }
    });
    tracing::info!(%bound, %advertised, "internal forwarding listener");
    Ok(advertised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use feige_core::UserId;
    use tower::ServiceExt;

    fn request(token: &str, body: &str) -> axum::http::Request<axum::body::Body> {
        axum::http::Request::post(FORWARD_PATH)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn only_the_shared_secret_may_forward() {
        let hub = Arc::new(Hub::new("n1", 8));
        let reg = hub.register(UserId(1), "s", "ios");
        let app = router(hub.clone(), "s3cret");
        let push = r#"[{"op":"close_session","user_id":1,"sid":"s"}]"#;
        let wrong = app.clone().oneshot(request("guess", push)).await.map(|r| r.status());
        assert_eq!(wrong.ok(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(*reg.control.borrow(), crate::hub::Close::Open);
        let garbage = app.clone().oneshot(request("s3cret", "{")).await.map(|r| r.status());
        assert_eq!(garbage.ok(), Some(StatusCode::BAD_REQUEST));
        let ok = app.oneshot(request("s3cret", push)).await.map(|r| r.status());
        assert_eq!(ok.ok(), Some(StatusCode::NO_CONTENT));
        assert_eq!(*reg.control.borrow(), crate::hub::Close::LoggedOut);
    }
}
