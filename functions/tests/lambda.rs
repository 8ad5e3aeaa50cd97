//! The function routers behind real API Gateway HTTP API (v2) event JSON: each event is
//! turned into a request by `lambda_http` exactly as in AWS, then served by the router that
//! the function binary runs.

#![allow(clippy::unwrap_used)]

use axum::Router;
use base64::Engine;
use feige_core::{Config, Feige};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

const TEMPLATE: &str = include_str!("data/apigw_v2_template.json");

/// Builds an API Gateway v2 event.
fn event(method: &str, path: &str, query: &str, token: Option<&str>, body: Option<Value>, base64: bool) -> String {
    let mut e: Value = serde_json::from_str(TEMPLATE).unwrap();
    e["rawPath"] = json!(path);
    e["rawQueryString"] = json!(query);
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    if !query.is_empty() {
        let params: serde_json::Map<String, Value> =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect();
        e["queryStringParameters"] = Value::Object(params);
    }
    if let Some(t) = token {
        e["headers"]["authorization"] = json!(format!("Bearer {t}"));
    }
    if let Some(b) = body {
        let text = b.to_string();
        if base64 {
            e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(text));
            e["isBase64Encoded"] = json!(true);
        } else {
            e["body"] = json!(text);
        }
    }
    e.to_string()
}

/// Runs one event through one function's router.
async fn invoke(function: &Router, event: String) -> (u16, Value) {
    let req = lambda_http::request::from_str(&event).unwrap();
    let resp = function.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

struct Functions {
    auth: Router,
    send: Router,
    sync: Router,
    roam: Router,
    conversations: Router,
    users: Router,
    _dir: TempDir,
}

/// The function routers over one set of backends, as separate Lambda functions share one
/// database, timeline store and cache.
async fn functions() -> Functions {
    let dir = TempDir::new().unwrap();
    let path = dir.path().display().to_string();
    let config = Config::from_lookup(|k| match k {
        "FEIGE_DATA_DIR" => Some(path.clone()),
        "FEIGE_TOKEN_SECRET" => Some("lambda-test-secret-0123456789".into()),
        _ => None,
    })
    .unwrap();
    let (feige, _): (Feige, _) = feige_store::build(config).await.unwrap();
    let f = |r: Router<Feige>| feige_api::finish(r, feige.clone());
    Functions {
        auth: f(feige_api::auth::router()),
        send: f(feige_api::messages::router()),
        sync: f(feige_api::sync::router()),
        roam: f(feige_api::history::router()),
        conversations: f(feige_api::conversations::router()),
        users: f(feige_api::users::router()),
        _dir: dir,
    }
}

async fn login(fns: &Functions, name: &str) -> (i64, String) {
    let (s, _) = invoke(
        &fns.auth,
        event("POST", "/v1/auth/register", "", None, Some(json!({"username": name, "password": "password-1"})), false),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = invoke(
        &fns.auth,
        event("POST", "/v1/auth/login", "", None, Some(json!({"username": name, "password": "password-1"})), true),
    )
    .await;
    assert_eq!(s, 200, "{b:?}");
    (b["user_id"].as_i64().unwrap(), b["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn chat_through_api_gateway_events() {
    let fns = functions().await;
    let (a, ta) = login(&fns, "lambda-a").await;
    let (b, tb) = login(&fns, "lambda-b").await;
    let (s, me) = invoke(&fns.users, event("GET", "/v1/users/me", "", Some(&ta), None, false)).await;
    assert_eq!((s, me["user_id"].as_i64()), (200, Some(a)));

    let send = |cmid: &str, base64: bool| {
        event(
            "POST",
            "/v1/messages",
            "",
            Some(&ta),
            Some(json!({"client_msg_id": cmid, "to": {"kind": "user", "id": b}, "type": "text", "body": cmid})),
            base64,
        )
    };
    let (s, first) = invoke(&fns.send, send("l-1", false)).await;
    assert_eq!(s, 201, "{first:?}");
    let (s, again) = invoke(&fns.send, send("l-1", true)).await;
    assert_eq!((s, &again), (200, &first));
    let (s, _) = invoke(&fns.send, send("l-2", true)).await;
    assert_eq!(s, 201);

    let (s, page) = invoke(&fns.sync, event("GET", "/v1/sync", "since=0&limit=10", Some(&tb), None, false)).await;
    assert_eq!(s, 200);
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2]);
    let (_, page) = invoke(&fns.sync, event("GET", "/v1/sync", "since=1", Some(&tb), None, false)).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);

    let conv = first["conversation_id"].as_str().unwrap();
    let (s, hist) = invoke(
        &fns.roam,
        event("GET", &format!("/v1/conversations/{conv}/messages"), "limit=1", Some(&tb), None, false),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(hist["messages"][0]["conv_seq"], 2);
    assert_eq!(hist["has_more"], true);

    let (s, list) = invoke(&fns.conversations, event("GET", "/v1/conversations", "", Some(&tb), None, false)).await;
    assert_eq!((s, list["conversations"][0]["unread"].as_u64()), (200, Some(2)));
    let (s, r) = invoke(
        &fns.conversations,
        event("POST", &format!("/v1/conversations/{conv}/read"), "", Some(&tb), Some(json!({"seq": 2})), false),
    )
    .await;
    assert_eq!((s, r["unread"].as_u64()), (200, Some(0)));

    // Logout through the auth function revokes the token for every other function.
    let (s, _) = invoke(&fns.auth, event("POST", "/v1/auth/logout", "", Some(&tb), None, false)).await;
    assert_eq!(s, 204);
    let (s, err) = invoke(&fns.sync, event("GET", "/v1/sync", "", Some(&tb), None, false)).await;
    assert_eq!((s, err["error"]["code"].as_str()), (401, Some("token_revoked")));
}

#[tokio::test]
async fn each_function_serves_only_its_own_routes_and_errors_keep_their_shape() {
    let fns = functions().await;
    let (_, ta) = login(&fns, "lambda-c").await;
    // The sync function does not answer for send.
    let (s, e) = invoke(&fns.sync, event("POST", "/v1/messages", "", Some(&ta), Some(json!({})), false)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, e) = invoke(&fns.send, event("POST", "/v1/messages", "", None, Some(json!({})), false)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("missing_token")));
    let mut bad = event("POST", "/v1/messages", "", Some(&ta), None, false);
    bad = bad.replacen("\"isBase64Encoded\":false", "\"body\":\"{oops\",\"isBase64Encoded\":false", 1);
    let (s, e) = invoke(&fns.send, bad).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")));
}

#[tokio::test]
async fn a_function_refuses_to_start_without_a_shared_token_secret() {
    // SAFETY of the test: no other test in this binary reads FEIGE_TOKEN_SECRET from the
    // process environment.
    let err = feige_functions::app(feige_api::sync::router(), feige_functions::Needs::ALL).await.err().unwrap();
    assert!(err.to_string().contains("FEIGE_TOKEN_SECRET"), "{err}");
}
