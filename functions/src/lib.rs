//! Shared start-up of the Lambda functions: each binary in `src/bin/` is one HTTP action,
//! running the same axum router as `local-runtime` under `lambda_http`.

use axum::Router;
use feige_core::{Config, Feige};

pub use feige_backends::Needs;

/// Builds the application for a Lambda from the environment, after reading the variables
/// given as Secrets Manager ARNs (`FEIGE_<VAR>_SECRET_ARN`, see `feige-secrets`). A shared
/// `FEIGE_TOKEN_SECRET` is required: every instance must verify tokens issued by every other.
pub async fn app(router: Router<Feige>, needs: Needs) -> Result<Router, lambda_http::Error> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let endpoint = std::env::var("FEIGE_SECRETS_ENDPOINT_URL").ok().filter(|v| !v.is_empty());
    let secrets = feige_secrets::resolve(&env, endpoint.as_deref()).await?;
    let config =
        Config::from_lookup(|k| secrets.get(k).cloned().or_else(|| std::env::var(k).ok().filter(|v| !v.is_empty())))?;
    if config.token_secret.is_none() {
        return Err("FEIGE_TOKEN_SECRET must be set for Lambda functions".into());
    }
    let (feige, _backends) = feige_backends::build_for(config, needs).await?;
    Ok(feige_api::finish(router, feige))
}

/// Runs one action as a Lambda function, connecting only the backends it `needs` besides the
/// database and the cache.
pub async fn run(router: Router<Feige>, needs: Needs) -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(false)
        .without_time()
        .init();
    lambda_http::run(app(router, needs).await?).await
}
