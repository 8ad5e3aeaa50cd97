//! Lambda function `send`: send a message.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::messages::router(), feige_functions::Needs { timeline: true, bus: true }).await
}
