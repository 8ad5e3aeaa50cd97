//! MSK discovery against a local stub of the MSK REST API (`GET
//! /v1/clusters/{ClusterArn}/bootstrap-brokers`, restJson1), served on 127.0.0.1 by a tiny
//! hand-written HTTP/1.1 server. Nothing leaves the machine.
#![allow(clippy::unwrap_used)]

use aws_sdk_kafka::config::retry::RetryConfig;
use aws_sdk_kafka::config::{BehaviorVersion, Credentials, Region};
use feige_msk::{MskAuth, bootstrap_brokers, bootstrap_brokers_with, bus_url};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ARN: &str = "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5";
/// `ARN` as the SDK puts it in the path: every `:` and `/` percent-encoded.
const ARN_IN_PATH: &str =
    "arn%3Aaws%3Akafka%3Aeu-west-1%3A123456789012%3Acluster%2Ffeige-bus%2F6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5";
const PLAINTEXT: &str =
    "b-1.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9092,b-2.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9092";
const TLS: &str =
    "b-1.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9094,b-2.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9094";
const IAM: &str =
    "b-1.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.feige.abc123.c2.kafka.eu-west-1.amazonaws.com:9098";
const KEY_ID: &str = "AKIDSTUBEXAMPLE00001";
/// Bound on every call under test whose stub answers.
const CALL: Duration = Duration::from_secs(5);

/// The JSON of GetBootstrapBrokers; the service names the fields in camelCase.
fn brokers_json(iam: bool) -> String {
    let mut body = serde_json::json!({
        "bootstrapBrokerString": PLAINTEXT,
        "bootstrapBrokerStringTls": TLS,
    });
    if iam {
        body["bootstrapBrokerStringSaslIam"] = IAM.into();
    }
    body.to_string()
}

/// What the stub answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON body.
    Json(String),
    /// An error status with the service's `x-amzn-errortype` header and a JSON message.
    Error(u16, &'static str),
    /// Reads the request and never answers.
    Silent,
}

/// One request as the stub received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    async fn start(reply: Reply) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                let (log, reply) = (log.clone(), reply.clone());
                conns.spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut request_line = lines.next().unwrap_or_default().split(' ');
                    let method = request_line.next().unwrap_or_default().to_owned();
                    let path = request_line.next().unwrap_or_default().to_owned();
                    let headers = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    log.lock().unwrap().push(Seen { method, path, headers });
                    let (status, extra, body) = match reply {
                        Reply::Json(body) => ("200 OK".to_owned(), String::new(), body),
                        Reply::Error(code, kind) => (
                            format!("{code} Stub"),
                            format!("x-amzn-errortype: {kind}\r\n"),
                            serde_json::json!({ "message": format!("stub says {kind}") }).to_string(),
                        ),
                        Reply::Silent => {
                            // Hold the connection open until the test drops the stub.
                            std::future::pending::<()>().await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         x-amzn-requestid: stub-request\r\n{extra}connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Stub { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A client configuration like the production one, with static fake credentials, the stub as
/// endpoint and no retries (one request per call, fast failures).
fn config(endpoint: &str) -> aws_sdk_kafka::Config {
    aws_sdk_kafka::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(KEY_ID, "stub-secret-key", None, None, "feige-msk-test"))
        .endpoint_url(endpoint)
        .http_client(feige_msk::https_client())
        .retry_config(RetryConfig::disabled())
        .build()
}

fn assert_signed_request(seen: &Seen, region: &str, key_id: &str) {
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, format!("/v1/clusters/{ARN_IN_PATH}/bootstrap-brokers").replace("eu-west-1", region));
    let auth = seen.header("authorization").unwrap_or_else(|| panic!("no Authorization header: {seen:?}"));
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={key_id}/")),
        "not a SigV4 Authorization header: {auth}"
    );
    assert!(auth.contains(&format!("/{region}/kafka/aws4_request")), "wrong credential scope: {auth}");
    assert!(auth.contains("SignedHeaders=") && auth.contains("Signature="), "{auth}");
    assert!(seen.header("x-amz-date").is_some(), "no x-amz-date: {seen:?}");
}

#[tokio::test]
async fn each_auth_mode_returns_its_broker_string() {
    let stub = Stub::start(Reply::Json(brokers_json(true))).await;
    for (auth, want) in [(MskAuth::Plaintext, PLAINTEXT), (MskAuth::Tls, TLS), (MskAuth::Iam, IAM)] {
        let got = bootstrap_brokers_with(config(&stub.url), ARN, auth, CALL).await.unwrap();
        assert_eq!(got, want, "{auth}");
        assert_eq!(bus_url(&got), format!("kafka://{want}"));
    }
    let seen = stub.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for request in &seen {
        assert_signed_request(request, "eu-west-1", KEY_ID);
    }
}

#[tokio::test]
async fn missing_iam_brokers_are_a_clear_error() {
    let stub = Stub::start(Reply::Json(brokers_json(false))).await;
    let err = bootstrap_brokers_with(config(&stub.url), ARN, MskAuth::Iam, CALL).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{err}");
    let message = err.to_string();
    assert!(message.contains("BootstrapBrokerStringSaslIam"), "{message}");
    assert!(message.contains("IAM access control"), "{message}");
    assert!(message.contains(ARN), "{message}");
    // The other listeners of the same cluster are still found.
    assert_eq!(bootstrap_brokers_with(config(&stub.url), ARN, MskAuth::Tls, CALL).await.unwrap(), TLS);

    // An empty string is as good as none.
    let empty = Stub::start(Reply::Json(r#"{"bootstrapBrokerStringTls": ""}"#.to_owned())).await;
    let err = bootstrap_brokers_with(config(&empty.url), ARN, MskAuth::Tls, CALL).await.unwrap_err();
    assert_eq!(err.code(), "unsupported_backend", "{err}");
    assert!(err.to_string().contains("BootstrapBrokerStringTls"), "{err}");
}

#[tokio::test]
async fn refused_and_failed_calls_are_backend_unavailable() {
    for (status, kind) in
        [(403, "ForbiddenException"), (404, "NotFoundException"), (500, "InternalServerErrorException")]
    {
        let stub = Stub::start(Reply::Error(status, kind)).await;
        let err = bootstrap_brokers_with(config(&stub.url), ARN, MskAuth::Tls, CALL).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (503, "backend_unavailable"), "{status}: {err}");
        assert!(matches!(err, feige_core::Error::Unavailable { backend: "bus", .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(kind) && message.contains(&status.to_string()), "{message}");
        assert_eq!(message.contains("kafka:GetBootstrapBrokers"), status == 403, "{message}");
        assert_eq!(err.public_message(), "backend bus is unavailable");
        assert_eq!(stub.seen().len(), 1);
    }
}

#[tokio::test]
async fn malformed_input_is_rejected_before_any_request() {
    let stub = Stub::start(Reply::Json(brokers_json(true))).await;
    for arn in [
        "",
        "not-an-arn",
        "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus",
        "arn:aws:sqs:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
        "arn:aws:kafka:eu-west-1:1234:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
    ] {
        let err = bootstrap_brokers_with(config(&stub.url), arn, MskAuth::Tls, CALL).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{arn:?}: {err}");
        // The public entry point checks before it loads any AWS configuration.
        let err = bootstrap_brokers(arn, MskAuth::Tls, Some(&stub.url)).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{arn:?}: {err}");
    }
    let err = bootstrap_brokers(ARN, MskAuth::Tls, Some("127.0.0.1:1")).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{err}");
    let err = MskAuth::parse("scram").unwrap_err();
    assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{err}");
    assert!(stub.seen().is_empty(), "{:?}", stub.seen());
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast() {
    // A port that was just free: connections are refused.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let start = Instant::now();
    let err = bootstrap_brokers_with(config(&url), ARN, MskAuth::Tls, CALL).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (503, "backend_unavailable"), "{err}");
    assert!(start.elapsed() < CALL, "took {:?}", start.elapsed());
}

#[tokio::test]
async fn a_silent_endpoint_hits_the_timeout() {
    let stub = Stub::start(Reply::Silent).await;
    let start = Instant::now();
    let err =
        bootstrap_brokers_with(config(&stub.url), ARN, MskAuth::Tls, Duration::from_millis(300)).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!((err.status(), err.code()), (503, "backend_unavailable"), "{err}");
    assert!(err.to_string().contains("within 0.3s"), "{err}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(stub.seen().len(), 1, "the request did reach the stub");
}

// The public entry point with the default credentials chain (environment keys) is exercised
// end to end by local-runtime's `real_msk_discovery_finds_the_brokers`, which starts the
// binary with FEIGE_MSK_CLUSTER_ARN and a stub MSK endpoint and sends messages through the
// brokers it discovered.
