//! The function binaries under a Lambda Runtime API emulator (tools/lambda-emulator), fronted
//! as an HTTP API with API Gateway v2 events: a true Runtime-API round trip per request, one
//! process per function started on first use. The contract flow runs once on embedded backends
//! (where every function shares one SQLite file and in-process caches are per process, so only
//! single-function-consistent checks apply) and once on the real backends, where the functions
//! share MySQL, MongoDB, Redis and Kafka as they would on AWS.

#![allow(clippy::unwrap_used)]

use feige_testkit::http::Api;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// Each function binary and the routes its router serves.
const FUNCTIONS: &[(&str, &str, &[&str])] = &[
    (
        "auth",
        env!("CARGO_BIN_EXE_auth"),
        &["POST /v1/auth/register", "POST /v1/auth/login", "POST /v1/auth/refresh", "POST /v1/auth/logout"],
    ),
    ("users", env!("CARGO_BIN_EXE_users"), &["GET /v1/users/me", "GET /v1/users/{user_id}"]),
    ("send", env!("CARGO_BIN_EXE_send"), &["POST /v1/messages", "POST /v1/messages/{msg_id}/recall"]),
    ("sync", env!("CARGO_BIN_EXE_sync"), &["GET /v1/sync"]),
    ("roam", env!("CARGO_BIN_EXE_roam"), &["GET /v1/conversations/{id}/messages"]),
    (
        "conversations",
        env!("CARGO_BIN_EXE_conversations"),
        &["GET /v1/conversations", "POST /v1/conversations/{id}/read", "GET /v1/conversations/{id}/read-positions"],
    ),
    (
        "groups",
        env!("CARGO_BIN_EXE_groups"),
        &[
            "POST /v1/groups",
            "GET /v1/groups",
            "GET /v1/groups/{id}",
            "PATCH /v1/groups/{id}",
            "DELETE /v1/groups/{id}",
            "GET /v1/groups/{id}/members",
            "POST /v1/groups/{id}/members",
            "DELETE /v1/groups/{id}/members/{user_id}",
            "POST /v1/groups/{id}/admins",
            "DELETE /v1/groups/{id}/admins/{user_id}",
            "POST /v1/groups/{id}/owner",
        ],
    ),
    ("health", env!("CARGO_BIN_EXE_health"), &["GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"]),
];

struct Emulator {
    child: Child,
    api: Api,
    _dir: TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Emulator {
    fn start(env: Vec<(String, String)>) -> Emulator {
        let dir = TempDir::new().unwrap();
        let mut all_env: serde_json::Map<String, Value> = env.into_iter().map(|(k, v)| (k, json!(v))).collect();
        all_env.insert("FEIGE_DATA_DIR".into(), json!(dir.path().join("data").display().to_string()));
        if !all_env.contains_key("FEIGE_TOKEN_SECRET_ARN") {
            all_env.insert("FEIGE_TOKEN_SECRET".into(), json!("emulator-test-secret-0123456789"));
        }
        all_env.insert("FEIGE_SEND_RATE_PER_SEC".into(), json!("0"));
        all_env.insert("RUST_LOG".into(), json!("warn"));
        let functions: serde_json::Map<String, Value> =
            FUNCTIONS.iter().map(|(n, bin, routes)| (n.to_string(), json!({"bin": bin, "routes": routes}))).collect();
        let config = dir.path().join("emulator.json");
        std::fs::write(&config, json!({"listen": "127.0.0.1:0", "env": all_env, "functions": functions}).to_string())
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/lambda-emulator/emulator.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for the Lambda emulator");
        let line =
            BufReader::new(child.stdout.take().unwrap()).lines().next().expect("emulator printed nothing").unwrap();
        let base = line.rsplit(' ').next().unwrap().to_owned();
        Emulator { child, api: Api::new(base), _dir: dir }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.api.call(method, path, token, body).await
    }

    async fn user(&self, name: &str) -> (i64, String) {
        let (s, b) = self
            .call("POST", "/v1/auth/register", None, Some(json!({"username": name, "password": "password-1"})))
            .await;
        assert_eq!(s, 201, "{b:?}");
        let (s, b) =
            self.call("POST", "/v1/auth/login", None, Some(json!({"username": name, "password": "password-1"}))).await;
        assert_eq!(s, 200, "{b:?}");
        (b["user_id"].as_i64().unwrap(), b["access_token"].as_str().unwrap().to_owned())
    }
}

/// The HTTP contract through the function binaries.
async fn contract(emu: &Emulator, shared_cache: bool) -> Value {
    let (s, _) = emu.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (a, ta) = emu.user("lambda-alice").await;
    let (b, tb) = emu.user("lambda-bob").await;
    let (s, me) = emu.call("GET", "/v1/users/me", Some(&ta), None).await;
    assert_eq!((s, me["user_id"].as_i64()), (200, Some(a)));
    let send = json!({"client_msg_id": "e-1", "to": {"kind": "user", "id": b}, "type": "text", "body": "via lambda"});
    let (s, first) = emu.call("POST", "/v1/messages", Some(&ta), Some(send.clone())).await;
    assert_eq!(s, 201, "{first:?}");
    let (s, again) = emu.call("POST", "/v1/messages", Some(&ta), Some(send)).await;
    assert_eq!((s, &again), (200, &first), "an idempotent retry through another invocation");
    let (s, page) = emu.call("GET", "/v1/sync?since=0&limit=10", Some(&tb), None).await;
    assert_eq!(s, 200, "{page:?}");
    assert_eq!(page["events"][0]["msg_id"], first["msg_id"]);
    let conv = first["conversation_id"].as_str().unwrap();
    let (s, hist) = emu.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&tb), None).await;
    assert_eq!((s, hist["messages"].as_array().map(Vec::len)), (200, Some(1)));
    let (s, r) = emu.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&tb), Some(json!({"seq": 1}))).await;
    assert_eq!((s, r["unread"].as_u64()), (200, Some(0)));
    let (s, g) = emu.call("POST", "/v1/groups", Some(&ta), Some(json!({"name": "lambda", "members": [b]}))).await;
    assert_eq!(s, 201, "{g:?}");
    let gid = g["group_id"].as_i64().unwrap();
    let (s, gm) = emu
        .call(
            "POST",
            "/v1/messages",
            Some(&tb),
            Some(json!({"client_msg_id": "e-2", "to": {"kind": "group", "id": gid}, "type": "text", "body": "hi"})),
        )
        .await;
    assert_eq!(s, 201, "{gm:?}");
    let (s, _) =
        emu.call("POST", &format!("/v1/messages/{}/recall", gm["msg_id"].as_str().unwrap()), Some(&tb), None).await;
    assert_eq!(s, 200);
    let (s, members) = emu.call("GET", &format!("/v1/groups/{gid}/members"), Some(&tb), None).await;
    assert_eq!((s, members["members"].as_array().map(Vec::len)), (200, Some(2)));
    let (s, err) = emu.call("GET", "/v1/sync?since=abc", Some(&tb), None).await;
    assert_eq!((s, err["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, _) = emu.call("GET", "/v1/nowhere", None, None).await;
    assert_eq!(s, 404);
    let (s, _) = emu.call("POST", "/v1/auth/logout", Some(&tb), None).await;
    assert_eq!(s, 204);
    if shared_cache {
        // Revocation is in Redis: every other function refuses the token at once.
        let (s, e) = emu.call("GET", "/v1/sync", Some(&tb), None).await;
        assert_eq!((s, e["error"]["code"].as_str()), (401, Some("token_revoked")));
    }
    let (_, stats) = emu.call("GET", "/__emulator/stats", None, None).await;
    for (name, _, _) in FUNCTIONS {
        assert!(stats[*name]["invocations"].as_u64().unwrap_or(0) > 0, "{name} was never invoked: {stats}");
        assert_eq!(stats[*name]["errors"], 0, "{name} reported an invocation error: {stats}");
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_under_the_runtime_api_on_embedded_backends() {
    let emu = Emulator::start(Vec::new());
    let stats = contract(&emu, false).await;
    eprintln!("cold starts (debug build, embedded): {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_under_the_runtime_api_on_real_backends() {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let id = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_micros()
    );
    let db = format!("feige_e2e_lambda{id}");
    let mysql = var("FEIGE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306");
    let env = vec![
        ("FEIGE_DB_URL".to_owned(), format!("{mysql}/{db}")),
        ("FEIGE_TIMELINE_URL".to_owned(), format!("{}/{db}", var("FEIGE_TEST_MONGO_URL", "mongodb://127.0.0.1:27217"))),
        ("FEIGE_CACHE_URL".to_owned(), var("FEIGE_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
        ("FEIGE_CACHE_PREFIX".to_owned(), format!("lambda{id}:")),
        ("FEIGE_BUS_URL".to_owned(), var("FEIGE_TEST_KAFKA_URL", "kafka://127.0.0.1:19092")),
        ("FEIGE_KAFKA_TOPIC".to_owned(), format!("feige-lambda-{id}")),
    ];
    let emu = Emulator::start(env);
    let stats = contract(&emu, true).await;
    eprintln!("cold starts (debug build, real backends): {stats}");
    drop(emu);
    let _ = Command::new("mariadb")
        .args(["-uroot", "-h127.0.0.1", "-e", &format!("DROP DATABASE IF EXISTS `{db}`")])
        .status();
}

/// A Secrets Manager stand-in: answers `GetSecretValue` (AWS JSON 1.1) for the ARNs it knows
/// and counts the SigV4-signed calls per ARN.
async fn secrets_stub(
    secrets: std::collections::HashMap<String, String>,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (secrets, log) = (secrets.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as content-length says.
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_lowercase(), body.to_owned());
                        }
                    }
                };
                let id =
                    serde_json::from_str::<Value>(&body).ok().and_then(|b| b["SecretId"].as_str().map(str::to_owned));
                let signed = head.contains("authorization: aws4-hmac-sha256")
                    && head.contains("x-amz-target: secretsmanager.getsecretvalue");
                let (status, reply) = match id.as_ref().and_then(|id| secrets.get(id).map(|v| (id, v))) {
                    Some((id, value)) if signed => {
                        log.lock().unwrap().push(id.clone());
                        ("200 OK", json!({"ARN": id, "Name": "n", "SecretString": value, "VersionId": "v1"}))
                    }
                    _ => (
                        "400 Bad Request",
                        json!({"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."}),
                    ),
                };
                let reply = reply.to_string();
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

/// On Lambda the functions get secret ARNs, not values: the token secret and the database URL
/// come from (a stand-in for) Secrets Manager, and two different functions agree on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_read_their_secrets_from_secrets_manager() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("from-secret.db");
    let token_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:feige/token-AbCdEf";
    let db_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:feige/db-url-GhIjKl";
    let token_secret = "token-secret-from-secrets-manager-0123";
    let secrets = [(token_arn, token_secret.to_owned()), (db_arn, format!("sqlite://{}", db.display()))];
    let (port, seen) = secrets_stub(secrets.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()).await;
    let env = vec![
        ("FEIGE_TOKEN_SECRET_ARN".to_owned(), token_arn.to_owned()),
        ("FEIGE_DB_URL_SECRET_ARN".to_owned(), db_arn.to_owned()),
        ("FEIGE_SECRETS_ENDPOINT_URL".to_owned(), format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID".to_owned(), "AKIDEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ];
    let emu = Emulator::start(env);
    // auth issues the token, users verifies it: both read the same secret.
    let (id, token) = emu.user("secretive").await;
    let (s, me) = emu.call("GET", "/v1/users/me", Some(&token), None).await;
    assert_eq!((s, me["user_id"].as_i64()), (200, Some(id)));
    let claims = feige_core::auth::TokenKeys::new(token_secret.as_bytes()).verify(&token, 0);
    assert!(claims.is_ok(), "the token is not signed with the secret's value");
    assert!(db.exists(), "the database URL did not come from its secret");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().filter(|a| *a == token_arn).count() >= 2, "both functions fetch the token secret: {seen:?}");
    assert!(seen.iter().any(|a| a == db_arn), "{seen:?}");
}
