//! Lambda function `sync`: sync with long-poll.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::sync::router()).await
}
