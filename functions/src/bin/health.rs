//! Lambda function `health`: healthz, readyz, metrics, openapi.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::health::router(), feige_functions::Needs { timeline: true, bus: true }).await
}
