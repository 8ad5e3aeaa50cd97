//! Lambda function `roam`: roam a conversation's history.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::history::router(), feige_functions::Needs { timeline: false, bus: false }).await
}
