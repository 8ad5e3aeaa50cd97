//! Lambda function `conversations`: the conversation list and read receipts.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::conversations::router(), feige_functions::Needs { timeline: true, bus: true }).await
}
