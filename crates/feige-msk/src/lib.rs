//! Finding the bus on Amazon MSK: at start, the functions and the push tier turn the ARN of an
//! MSK cluster into its bootstrap brokers with the `kafka:GetBootstrapBrokers` API, and from them
//! into the `kafka://` bus URL that `feige-kafka` parses ([`bus_url`]) plus the librdkafka
//! settings for the cluster's listener ([`librdkafka_settings`]).
//!
//! # Configuration
//!
//! | variable | meaning |
//! | --- | --- |
//! | `FEIGE_MSK_CLUSTER_ARN` | `arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>`; the API is called in the ARN's region |
//! | `FEIGE_MSK_AUTH` | which listener to use: `plaintext`, `tls` (the default) or `iam` ([`MskAuth::parse`]) |
//! | `FEIGE_MSK_ENDPOINT_URL` | optional: another endpoint for the MSK API (a VPC endpoint, a local stub in tests) |
//!
//! Credentials come from the AWS SDK's default provider chain: environment variables (what
//! Lambda sets), the ECS/EKS container or web-identity credentials, profile files, then EC2
//! instance metadata. The SDK's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KAFKA` are honoured
//! too; `FEIGE_MSK_ENDPOINT_URL` wins over them.
//!
//! # IAM permission
//!
//! The role of the function or the push tier needs `kafka:GetBootstrapBrokers` on the cluster
//! ARN (`"Resource": "<FEIGE_MSK_CLUSTER_ARN>"`). Without it the call fails with 403 and Feige
//! reports the bus as unavailable (503 `backend_unavailable`). Reaching the MSK API also needs
//! a way out of the VPC (a NAT gateway or an interface VPC endpoint for `kafka`).
//!
//! # Listeners
//!
//! - `plaintext`: port 9092, only when the cluster allows plaintext client traffic.
//! - `tls`: port 9094, TLS with certificates from Amazon's public CAs, so the system CA bundle
//!   trusts them (set `ssl.ca.location` through the Kafka settings if the image has none). The
//!   client must set `security.protocol=SSL`.
//! - `iam`: port 9098 (provisioned) or the only listener of an MSK Serverless cluster; needs IAM
//!   access control enabled on the cluster, `security.protocol=SASL_SSL` and
//!   `sasl.mechanism=OAUTHBEARER`, with the token produced by an MSK IAM signer. That signer
//!   (a SigV4-presigned `kafka-cluster:Connect` URL handed to librdkafka through an OAUTHBEARER
//!   token-refresh callback) is **not implemented yet**; the role also needs the
//!   `kafka-cluster:*` data-plane permissions (Connect, DescribeTopic, ReadData, WriteData,
//!   AlterGroup/DescribeGroup, and CreateTopic when Feige creates the topic).
//!
//! TLS and IAM need a librdkafka built with SSL support (the `ssl` or `ssl-vendored` feature of
//! the `rdkafka` crate).
//!
//! # Network
//!
//! The SDK speaks HTTPS through rustls on `ring` (the crypto provider the rest of the workspace
//! already builds). The whole discovery — credentials, retries, the call — is bounded by
//! [`TIMEOUT`].

use aws_config::BehaviorVersion;
use aws_sdk_kafka::config::{Region, SharedHttpClient};
use aws_sdk_kafka::error::ProvideErrorMetadata;
use aws_sdk_kafka::operation::get_bootstrap_brokers::GetBootstrapBrokersOutput;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use feige_core::{Error, Result};
use std::fmt;
use std::time::Duration;

/// The backend named in errors: MSK discovery is part of reaching the bus.
const BACKEND: &str = "bus";

/// How long [`bootstrap_brokers`] may take in all, credentials and retries included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Which listener of the cluster Feige connects to (`FEIGE_MSK_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MskAuth {
    /// Unencrypted, unauthenticated (`BootstrapBrokerString`, port 9092).
    Plaintext,
    /// TLS, unauthenticated (`BootstrapBrokerStringTls`, port 9094). The default.
    #[default]
    Tls,
    /// TLS with SASL/OAUTHBEARER signed by IAM credentials (`BootstrapBrokerStringSaslIam`,
    /// port 9098).
    Iam,
}

impl MskAuth {
    /// Parses a value of `FEIGE_MSK_AUTH`: `plaintext`, `tls` or `iam` (ASCII case ignored,
    /// surrounding blanks trimmed). Anything else is `400 unsupported_backend`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plaintext" => Ok(MskAuth::Plaintext),
            "tls" => Ok(MskAuth::Tls),
            "iam" => Ok(MskAuth::Iam),
            _ => Err(Error::bad_request(
                "unsupported_backend",
                format!("FEIGE_MSK_AUTH {s:?}: expected plaintext, tls or iam"),
            )),
        }
    }

    /// The `FEIGE_MSK_AUTH` spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MskAuth::Plaintext => "plaintext",
            MskAuth::Tls => "tls",
            MskAuth::Iam => "iam",
        }
    }

    /// The name of the `GetBootstrapBrokers` field this mode reads (for messages).
    fn field(self) -> &'static str {
        match self {
            MskAuth::Plaintext => "BootstrapBrokerString",
            MskAuth::Tls => "BootstrapBrokerStringTls",
            MskAuth::Iam => "BootstrapBrokerStringSaslIam",
        }
    }

    fn pick(self, out: &GetBootstrapBrokersOutput) -> Option<&str> {
        match self {
            MskAuth::Plaintext => out.bootstrap_broker_string(),
            MskAuth::Tls => out.bootstrap_broker_string_tls(),
            MskAuth::Iam => out.bootstrap_broker_string_sasl_iam(),
        }
    }
}

impl fmt::Display for MskAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a cluster ARN that matter here.
#[derive(Debug, PartialEq, Eq)]
struct ClusterArn<'a> {
    region: &'a str,
}

fn bad_arn(arn: &str, why: &str) -> Error {
    Error::bad_request(
        "unsupported_backend",
        format!(
            "FEIGE_MSK_CLUSTER_ARN {arn:?}: {why} (expected arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>)"
        ),
    )
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: lowercase words, then a number.
fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts.last().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A UUID, optionally followed by MSK's `-<n>` (provisioned) or `-s<n>` (serverless) suffix.
fn valid_cluster_id(id: &str) -> bool {
    let (uuid, suffix) = match id.get(36..) {
        Some("") => (id, None),
        Some(rest) => (&id[..36], Some(rest)),
        None => return false,
    };
    let uuid_ok =
        uuid.split('-').map(str::len).eq([8, 4, 4, 4, 12]) && uuid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    let suffix_ok = suffix.is_none_or(|s| {
        s.strip_prefix('-').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric()))
    });
    uuid_ok && suffix_ok
}

impl<'a> ClusterArn<'a> {
    /// Checks `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`; a malformed ARN
    /// is `400 unsupported_backend`.
    fn parse(arn: &'a str) -> Result<Self> {
        let fields: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, resource] = fields[..] else {
            return Err(bad_arn(arn, "not an ARN of six colon-separated fields"));
        };
        if prefix != "arn" || !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(bad_arn(arn, "not an AWS ARN"));
        }
        if service != "kafka" {
            return Err(bad_arn(arn, "not an MSK (kafka) ARN"));
        }
        if !valid_region(region) {
            return Err(bad_arn(arn, "bad region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_arn(arn, "the account must be 12 digits"));
        }
        let parts: Vec<&str> = resource.split('/').collect();
        let ["cluster", name, id] = parts[..] else {
            return Err(bad_arn(arn, "the resource must be cluster/<name>/<uuid>"));
        };
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad_arn(arn, "bad cluster name"));
        }
        if !valid_cluster_id(id) {
            return Err(bad_arn(arn, "bad cluster id"));
        }
        Ok(ClusterArn { region })
    }
}

/// The HTTPS client the SDK uses here: hyper with rustls on `ring`, trusting the system's CA
/// certificates. Public for callers (and tests) that build their own [`aws_sdk_kafka::Config`]
/// for [`bootstrap_brokers_with`].
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Asks MSK for the bootstrap brokers of `cluster_arn` on the listener of `auth`, and returns
/// them as `host:port,host:port,…`.
///
/// The SDK client is set up in the ARN's region with the default credentials chain;
/// `endpoint_url` (`FEIGE_MSK_ENDPOINT_URL`) replaces the MSK endpoint when given. Errors:
/// a malformed ARN or endpoint URL, or a cluster without a listener for `auth`, is
/// `400 unsupported_backend`; no answer within [`TIMEOUT`], an unreachable endpoint, missing
/// credentials or a failed call (403, 404, 5xx…) is `503 backend_unavailable` ("bus").
pub async fn bootstrap_brokers(cluster_arn: &str, auth: MskAuth, endpoint_url: Option<&str>) -> Result<String> {
    let arn = ClusterArn::parse(cluster_arn)?;
    if let Some(url) = endpoint_url {
        check_endpoint_url(url)?;
    }
    let work = async {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(arn.region.to_owned()))
            .http_client(https_client())
            .load()
            .await;
        // The override goes on the MSK client only: STS (web identity) keeps its own endpoint.
        let mut config = aws_sdk_kafka::config::Builder::from(&sdk);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        call(config.build(), cluster_arn, auth).await
    };
    tokio::time::timeout(TIMEOUT, work).await.map_err(|_| timed_out(cluster_arn, TIMEOUT))?
}

/// [`bootstrap_brokers`] with a client configuration of the caller's (region, credentials,
/// endpoint, retries) and a timeout of its own; the ARN is checked the same way.
pub async fn bootstrap_brokers_with(
    config: aws_sdk_kafka::Config,
    cluster_arn: &str,
    auth: MskAuth,
    timeout: Duration,
) -> Result<String> {
    ClusterArn::parse(cluster_arn)?;
    tokio::time::timeout(timeout, call(config, cluster_arn, auth)).await.map_err(|_| timed_out(cluster_arn, timeout))?
}

fn check_endpoint_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(Error::bad_request(
            "unsupported_backend",
            format!("FEIGE_MSK_ENDPOINT_URL {url:?}: expected http(s)://host[:port]"),
        )),
    }
}

fn timed_out(cluster_arn: &str, after: Duration) -> Error {
    Error::unavailable(
        BACKEND,
        format!("no bootstrap brokers from MSK for {cluster_arn} within {}s", after.as_secs_f32()),
    )
}

async fn call(config: aws_sdk_kafka::Config, cluster_arn: &str, auth: MskAuth) -> Result<String> {
    let client = aws_sdk_kafka::Client::from_conf(config);
    let out = client.get_bootstrap_brokers().cluster_arn(cluster_arn).send().await.map_err(|e| {
        let hint = match e.raw_response().map(|r| r.status().as_u16()) {
            Some(401 | 403) => " (does the role allow kafka:GetBootstrapBrokers on this cluster?)",
            _ => "",
        };
        let detail = match e.as_service_error() {
            Some(se) => format!(
                "{} {}: {}",
                e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default(),
                se.code().unwrap_or("unknown error"),
                se.message().unwrap_or("no message")
            ),
            None => error_chain(&e),
        };
        Error::unavailable(BACKEND, format!("GetBootstrapBrokers for {cluster_arn}: {detail}{hint}"))
    })?;
    match auth.pick(&out).map(str::trim) {
        Some(brokers) if !brokers.is_empty() => Ok(brokers.to_owned()),
        _ => Err(Error::bad_request(
            "unsupported_backend",
            format!(
                "MSK cluster {cluster_arn} has no {} for FEIGE_MSK_AUTH={auth}: is {} enabled on the cluster?",
                auth.field(),
                match auth {
                    MskAuth::Plaintext => "plaintext client traffic",
                    MskAuth::Tls => "TLS client traffic",
                    MskAuth::Iam => "IAM access control",
                }
            ),
        )),
    }
}

/// `error: its source: its source…`, on one line (the SDK's own Display says only "dispatch
/// failure").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The bus URL for `brokers` (`host:port,host:port,…`), for `KafkaSettings::parse`.
pub fn bus_url(brokers: &str) -> String {
    format!("kafka://{brokers}")
}

/// The librdkafka settings the Kafka clients need for `auth`, to append to
/// `KafkaSettings::extra`:
/// - `plaintext`: none;
/// - `tls`: `security.protocol=SSL`;
/// - `iam`: `security.protocol=SASL_SSL` and `sasl.mechanism=OAUTHBEARER`. The OAUTHBEARER
///   token must come from an MSK IAM signer in the client's token-refresh callback, which is
///   **not implemented yet**: with these settings alone the brokers refuse the connection.
pub fn librdkafka_settings(auth: MskAuth) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match auth {
        MskAuth::Plaintext => &[],
        MskAuth::Tls => &[("security.protocol", "SSL")],
        MskAuth::Iam => &[("security.protocol", "SASL_SSL"), ("sasl.mechanism", "OAUTHBEARER")],
    };
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ARN: &str = "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5";

    #[test]
    fn auth_parses_and_defaults_to_tls() {
        assert_eq!(MskAuth::default(), MskAuth::Tls);
        assert_eq!(MskAuth::parse("plaintext").unwrap(), MskAuth::Plaintext);
        assert_eq!(MskAuth::parse(" TLS ").unwrap(), MskAuth::Tls);
        assert_eq!(MskAuth::parse("iam").unwrap(), MskAuth::Iam);
        for bad in ["", "ssl", "sasl_iam", "scram"] {
            let err = MskAuth::parse(bad).unwrap_err();
            assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{bad:?}");
        }
        for auth in [MskAuth::Plaintext, MskAuth::Tls, MskAuth::Iam] {
            assert_eq!(MskAuth::parse(auth.as_str()).unwrap(), auth);
        }
    }

    #[test]
    fn arn_region_is_taken() {
        assert_eq!(ClusterArn::parse(ARN).unwrap().region, "eu-west-1");
        let serverless = "arn:aws:kafka:us-east-1:123456789012:cluster/sls/c9a5a5a1-0d1f-4b55-9a7c-0123456789ab-s1";
        assert_eq!(ClusterArn::parse(serverless).unwrap().region, "us-east-1");
        let gov = "arn:aws-us-gov:kafka:us-gov-west-1:123456789012:cluster/x/c9a5a5a1-0d1f-4b55-9a7c-0123456789ab";
        assert_eq!(ClusterArn::parse(gov).unwrap().region, "us-gov-west-1");
    }

    #[test]
    fn malformed_arns_are_unsupported_backend() {
        for arn in [
            "",
            "kafka://b-1:9092",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus",
            "arn:aws:s3:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:foo:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka::123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka:EU-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka:eu-west-1:12345:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka:eu-west-1:123456789012:topic/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5/t",
            "arn:aws:kafka:eu-west-1:123456789012:cluster//6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/not-a-uuid",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31x5",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/feige-bus/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5:x",
        ] {
            let err = ClusterArn::parse(arn).unwrap_err();
            assert_eq!((err.status(), err.code()), (400, "unsupported_backend"), "{arn:?}");
        }
    }

    #[test]
    fn endpoint_urls_are_checked() {
        assert!(check_endpoint_url("http://127.0.0.1:4566").is_ok());
        assert!(check_endpoint_url("https://vpce-1.kafka.eu-west-1.vpce.amazonaws.com").is_ok());
        for bad in ["", "127.0.0.1:4566", "http://", "ftp://x", "http:///x"] {
            assert_eq!(check_endpoint_url(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn bus_url_and_settings() {
        assert_eq!(bus_url("b-1.x:9094,b-2.x:9094"), "kafka://b-1.x:9094,b-2.x:9094");
        assert!(librdkafka_settings(MskAuth::Plaintext).is_empty());
        assert_eq!(librdkafka_settings(MskAuth::Tls), vec![("security.protocol".into(), "SSL".into())]);
        assert_eq!(
            librdkafka_settings(MskAuth::Iam),
            vec![
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.mechanism".to_string(), "OAUTHBEARER".to_string())
            ]
        );
    }
}
