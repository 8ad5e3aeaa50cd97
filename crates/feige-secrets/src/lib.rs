//! Secrets at start: on Lambda the template gives each function the *ARN* of a secret instead
//! of its value — `FEIGE_TOKEN_SECRET_ARN` for `FEIGE_TOKEN_SECRET`, `FEIGE_DB_URL_SECRET_ARN`
//! for `FEIGE_DB_URL`, `FEIGE_TIMELINE_URL_SECRET_ARN`; in general `FEIGE_<VAR>_SECRET_ARN` for
//! `FEIGE_<VAR>`, and `<name>_ARN` for the variables already named `…_SECRET` — and
//! [`resolve`] fetches each value with `secretsmanager:GetSecretValue` (the secret's
//! `SecretString` is the value), all in parallel, before the configuration is read. Values never
//! appear in the template, the function configuration or the logs.
//!
//! A variable set directly wins over its `_SECRET_ARN` (local runs, tests). The call goes to the
//! ARN's region with the SDK's default credentials (what Lambda sets); `FEIGE_SECRETS_ENDPOINT_URL`
//! replaces the endpoint (a VPC endpoint, a local stub in tests). The whole lookup is bounded
//! by [`TIMEOUT`]; any failure stops the start with `503 backend_unavailable` ("secrets"), so a
//! function never runs on a missing secret.

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use feige_core::{Error, Result};
use std::collections::HashMap;
use std::time::Duration;

const BACKEND: &str = "secrets";
const SUFFIX: &str = "_SECRET_ARN";

/// How long [`resolve`] may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `(FEIGE_<VAR>, arn)` pairs to fetch: every `FEIGE_<VAR>_SECRET_ARN` with a value whose
/// `FEIGE_<VAR>` is not set itself.
pub fn wanted(env: &[(String, String)]) -> Vec<(String, String)> {
    let set = |k: &str| env.iter().any(|(n, v)| n == k && !v.is_empty());
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, v)| k.starts_with("FEIGE_") && !v.is_empty())
        .filter_map(|(k, v)| target(k).map(|var| (var, v.clone())))
        .filter(|(var, _)| !set(var))
        .collect();
    out.sort();
    out
}

/// The variables whose own name ends in `_SECRET`: their ARN variable is `<name>_ARN`.
const SECRET_NAMED: [&str; 2] = ["FEIGE_TOKEN_SECRET", "FEIGE_INTERNAL_SECRET"];

/// The variable an ARN variable stands for: `FEIGE_TOKEN_SECRET_ARN` → `FEIGE_TOKEN_SECRET`,
/// `FEIGE_DB_URL_SECRET_ARN` → `FEIGE_DB_URL`.
fn target(arn_var: &str) -> Option<String> {
    let without_arn = arn_var.strip_suffix("_ARN")?;
    if SECRET_NAMED.contains(&without_arn) {
        return Some(without_arn.to_owned());
    }
    arn_var.strip_suffix(SUFFIX).map(str::to_owned)
}

/// The region of a Secrets Manager ARN (`arn:aws:secretsmanager:<region>:<account>:secret:<name>`).
fn region(arn: &str) -> Result<&str> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "secretsmanager", region, _, "secret", _] if !region.is_empty() => Ok(region),
        _ => Err(Error::bad_request("invalid_secret_arn", format!("{arn:?} is not a Secrets Manager secret ARN"))),
    }
}

/// Fetches the value of every secret [`wanted`] by `env`; returns `FEIGE_<VAR>` → value.
pub async fn resolve(env: &[(String, String)], endpoint_url: Option<&str>) -> Result<HashMap<String, String>> {
    let wanted = wanted(env);
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let regions: Vec<&str> = wanted.iter().map(|(_, arn)| region(arn)).collect::<Result<_>>()?;
    let work = async {
        let mut clients: HashMap<&str, aws_sdk_secretsmanager::Client> = HashMap::new();
        for r in &regions {
            if !clients.contains_key(r) {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let sdk = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(r.to_string()))
                    .http_client(http)
                    .load()
                    .await;
                let mut config = aws_sdk_secretsmanager::config::Builder::from(&sdk);
                if let Some(url) = endpoint_url {
                    config = config.endpoint_url(url);
                }
                clients.insert(r, aws_sdk_secretsmanager::Client::from_conf(config.build()));
            }
        }
        let calls = wanted.iter().zip(&regions).map(|((var, arn), r)| {
            let client = clients.get(r).cloned();
            async move {
                let client = client.ok_or_else(|| Error::internal("no client for the secret's region"))?;
                let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
                    let detail = match e.as_service_error() {
                        Some(se) => format!("{}: {}", se.code().unwrap_or("error"), se.message().unwrap_or("")),
                        None => format!("{e}"),
                    };
                    Error::unavailable(BACKEND, format!("GetSecretValue for {var}_SECRET_ARN: {detail}"))
                })?;
                let value = out.secret_string().filter(|v| !v.is_empty()).ok_or_else(|| {
                    Error::unavailable(BACKEND, format!("the secret of {var}_SECRET_ARN has no SecretString"))
                })?;
                Ok::<_, Error>((var.clone(), value.to_owned()))
            }
        });
        futures::future::try_join_all(calls).await
    };
    let values = tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| Error::unavailable(BACKEND, format!("no answer from Secrets Manager within {TIMEOUT:?}")))??;
    tracing::info!(vars = ?values.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "secrets read");
    Ok(values.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_unset_feige_variables_are_fetched() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:feige/token-AbCdEf";
        let e = env(&[
            ("FEIGE_TOKEN_SECRET_ARN", arn),
            ("FEIGE_DB_URL_SECRET_ARN", arn),
            ("FEIGE_DB_URL", "sqlite:///tmp/x.db"),
            ("OTHER_SECRET_ARN", arn),
            ("FEIGE_TIMELINE_URL_SECRET_ARN", ""),
        ]);
        assert_eq!(wanted(&e), vec![("FEIGE_TOKEN_SECRET".to_owned(), arn.to_owned())]);
        assert_eq!(target("FEIGE_TIMELINE_URL_SECRET_ARN").as_deref(), Some("FEIGE_TIMELINE_URL"));
        assert_eq!(target("FEIGE_INTERNAL_SECRET_ARN").as_deref(), Some("FEIGE_INTERNAL_SECRET"));
        assert_eq!(target("FEIGE_DB_URL"), None);
    }

    #[test]
    fn regions_come_from_the_arn() {
        assert_eq!(region("arn:aws:secretsmanager:us-east-2:1:secret:a:b").ok(), Some("us-east-2"));
        assert!(region("arn:aws:kafka:us-east-2:1:cluster/x").is_err());
        assert!(region("not-an-arn").is_err());
    }

    #[tokio::test]
    async fn nothing_to_fetch_makes_no_call() {
        let got = resolve(&env(&[("FEIGE_TOKEN_SECRET", "x")]), Some("http://127.0.0.1:9")).await;
        assert!(got.is_ok_and(|m| m.is_empty()));
    }
}
