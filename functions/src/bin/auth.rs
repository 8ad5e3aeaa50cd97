//! Lambda function `auth`: register, login, refresh, logout.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::auth::router(), feige_functions::Needs { timeline: false, bus: true }).await
}
