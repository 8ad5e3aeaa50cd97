//! Opens a Feige push socket and prints every frame as one line of JSON-ish text.
//!
//! ```sh
//! cargo run -p local-runtime --example ws_tail -- http://127.0.0.1:8080 "$TOKEN" 0
//! ```
//! Arguments: base URL, access token, and optionally `since` (a seq).

use feige_proto::v1::{ServerFrame, server_frame::Payload};
use futures::StreamExt;
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let token = args.next().ok_or_else(|| anyhow::anyhow!("usage: ws_tail BASE_URL ACCESS_TOKEN [SINCE]"))?;
    let since = args.next().map(|s| format!("&since={s}")).unwrap_or_default();
    let url = format!("{}/v1/ws?access_token={token}{since}", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Binary(b) => match ServerFrame::decode(b.as_ref())?.payload {
                Some(Payload::Event(e)) => println!(
                    "event seq={} kind={} conversation={} conv_seq={:?} sender={:?} body={}",
                    e.seq,
                    e.kind,
                    e.conversation_id,
                    e.conv_seq,
                    e.sender_id,
                    e.body_json.unwrap_or_default()
                ),
                other => println!("{other:?}"),
            },
            Message::Close(c) => {
                println!("closed: {c:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
