//! Lambda function `groups`: create, list, members, invite, kick/leave, update, disband, roles.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    feige_functions::run(feige_api::groups::router(), feige_functions::Needs { timeline: true, bus: true }).await
}
