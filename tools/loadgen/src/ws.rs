//! One push socket per receiver: connect from a chosen loopback source address, read
//! `ServerFrame`s (Hello, replayed events, Synced, live events, Pong, Kicked), heartbeat, and
//! reconnect with `since=<cursor>` if the server drops it (counted as an error) until told to
//! stop.

use crate::state::{Shared, lock};
use anyhow::Context;
use feige_proto::v1::{ClientFrame, Heartbeat, ServerFrame, client_frame, server_frame::Payload};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read from a socket at a time.
const CLIENT_READ_BUFFER: usize = 4096;

type Ws = WebSocketStream<TcpStream>;

/// Why a connection ended.
enum End {
    /// We were told to stop and closed it.
    Stopped,
    /// It ended on its own (server close, error, EOF): reconnect.
    Dropped(String),
}

async fn connect(sh: &Shared, token: &str, since: Option<u64>) -> anyhow::Result<Ws> {
    let source = sh.next_source();
    let socket = TcpSocket::new_v4().context("socket")?;
    socket.bind(SocketAddr::new(source.into(), 0)).with_context(|| format!("bind {source}"))?;
    let stream = socket.connect(sh.target.addr).await.context("connect")?;
    stream.set_nodelay(true).context("nodelay")?;
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    let mut req = format!("{}/v1/ws{query}", sh.target.ws_base).into_client_request().context("request")?;
    req.headers_mut()
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).context("token header")?);
    // tungstenite allocates its read buffer eagerly (128 KiB by default): per socket, that
    // would be most of the load generator's memory. Frames here are small.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await.context("upgrade")?;
    Ok(ws)
}

/// Runs receiver `rid`'s socket until `stop`. With a `gate`, each connect holds a permit
/// until the socket is synced (bounded connect concurrency during setup).
pub(crate) async fn session(sh: Arc<Shared>, rid: usize, stop: CancellationToken, gate: Option<Arc<Semaphore>>) {
    let token = sh.users[sh.receivers[rid].user].token.clone();
    let mut failures = 0u32;
    loop {
        let permit = match &gate {
            Some(g) => tokio::select! {
                p = g.clone().acquire_owned() => p.ok(),
                _ = stop.cancelled() => return,
            },
            None => None,
        };
        let since = lock(&sh.receivers[rid].state).cursor;
        let started = Instant::now();
        let ws = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&sh, &token, since)) => r,
            _ = stop.cancelled() => return,
        };
        let end = match ws {
            Ok(Ok(ws)) => {
                failures = 0;
                sh.c.connects.fetch_add(1, Ordering::Relaxed);
                drive(&sh, rid, ws, started, &stop, permit).await
            }
            Ok(Err(e)) => {
                sh.error(format!("ws connect: {}", e.root_cause()));
                failures += 1;
                End::Dropped(String::new())
            }
            Err(_) => {
                sh.error("ws connect: timed out");
                failures += 1;
                End::Dropped(String::new())
            }
        };
        match end {
            End::Stopped => return,
            End::Dropped(why) if !why.is_empty() => {
                if stop.is_cancelled() {
                    return;
                }
                sh.c.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                sh.error(format!("ws dropped: {why}"));
            }
            End::Dropped(_) => {}
        }
        // Back off a little before reconnecting (more after repeated connect failures).
        let pause = Duration::from_millis(50 + 200 * u64::from(failures.min(10))) + jitter(Duration::from_millis(100));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn jitter(up_to: Duration) -> Duration {
    Duration::from_micros(fastrand::u64(0..=up_to.as_micros().max(1) as u64))
}

fn heartbeat_frame() -> Message {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let frame = ClientFrame { payload: Some(client_frame::Payload::Heartbeat(Heartbeat { ts })) };
    Message::Binary(frame.encode_to_vec().into())
}

/// Reads one connection until it ends.
async fn drive(
    sh: &Shared,
    rid: usize,
    mut ws: Ws,
    started: Instant,
    stop: &CancellationToken,
    mut permit: Option<OwnedSemaphorePermit>,
) -> End {
    let mut period = sh.opts.heartbeat.max(Duration::from_millis(100));
    let mut next_beat = tokio::time::Instant::now() + jitter(period);
    let mut kicked = String::new();
    let mut synced = false;
    let end = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                break End::Stopped;
            }
            _ = tokio::time::sleep_until(next_beat) => {
                next_beat = tokio::time::Instant::now() + period;
                if let Err(e) = ws.send(heartbeat_frame()).await {
                    break End::Dropped(format!("heartbeat: {e}"));
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    let frame = match ServerFrame::decode(bytes) {
                        Ok(f) => f,
                        Err(e) => {
                            sh.error(format!("ws: undecodable frame: {e}"));
                            continue;
                        }
                    };
                    match frame.payload {
                        Some(Payload::Hello(h)) => {
                            lock(&sh.connect_lat).saturating_record((started.elapsed().as_micros() as u64).max(1));
                            let mut st = lock(&sh.receivers[rid].state);
                            match st.cursor {
                                Some(c) if c != h.cursor => {
                                    drop(st);
                                    sh.error("ws: Hello cursor differs from since");
                                }
                                Some(_) => {}
                                None => st.cursor = Some(h.cursor),
                            }
                            // Beat at a third of the server's timeout, or more often if asked.
                            let server = Duration::from_millis(u64::from(h.heartbeat_secs) * 1000 / 3);
                            if !server.is_zero() {
                                period = period.min(server).max(Duration::from_millis(100));
                            }
                            next_beat = tokio::time::Instant::now() + jitter(period);
                        }
                        Some(Payload::Synced(_)) if !synced => {
                            synced = true;
                            lock(&sh.synced_lat).saturating_record((started.elapsed().as_micros() as u64).max(1));
                            lock(&sh.receivers[rid].state).synced = true;
                            sh.c.synced.fetch_add(1, Ordering::Relaxed);
                            permit.take();
                        }
                        Some(Payload::Synced(_)) => sh.error("ws: a second Synced frame"),
                        Some(Payload::Event(e)) => {
                            let text = e.body_json.as_deref().and_then(|b| b.strip_prefix('"')?.strip_suffix('"'));
                            sh.on_event(rid, e.seq, &e.kind, text);
                        }
                        Some(Payload::Pong(_)) => {
                            sh.c.pongs.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Payload::Kicked(k)) => kicked = k.reason,
                        None => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    let reason = if kicked.is_empty() {
                        frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    } else {
                        kicked.clone()
                    };
                    break End::Dropped(format!("server closed {code} {reason}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::Dropped(format!("read: {e}")),
                None => break End::Dropped("connection ended without a close frame".into()),
            },
        }
    };
    if synced {
        lock(&sh.receivers[rid].state).synced = false;
        sh.c.synced.fetch_sub(1, Ordering::Relaxed);
    }
    end
}
