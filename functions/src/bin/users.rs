//! Lambda function `users`: users/me and users/{id}.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::users::router(), feige_functions::Needs { timeline: false, bus: false }).await
}
