//! Lambda function `sync`: sync with long-poll.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::sync::router(), feige_functions::Needs { timeline: true, bus: false }).await
}
