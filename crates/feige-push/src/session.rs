//! One WebSocket: authenticate on upgrade, replay everything after `since`, then stream live
//! events in seq order without gaps or duplicates, answer heartbeats, and close on idle,
//! logout, overflow or shutdown.

use crate::PushContext;
use crate::frames;
use crate::hub::Close;
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use feige_api::error::ApiError;
use feige_core::model::{Push, Seq};
use feige_core::usecases::Identity;
use feige_core::{Error, Feige, KickPolicy, timeline};
use feige_proto::v1::{ClientFrame, Hello, Kicked, Pong, Synced, client_frame, server_frame::Payload};
use futures::SinkExt;
use prost::Message as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Close codes the server uses.
pub mod close_code {
    /// Server restarting: reconnect elsewhere with `since`.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Silent past the heartbeat timeout.
    pub const IDLE: u16 = 4000;
    /// The session logged out or was replaced.
    pub const LOGGED_OUT: u16 = 4001;
    /// A newer socket of the user took this one's place (`FEIGE_KICK_POLICY`).
    pub const REPLACED: u16 = 4002;
    /// Too slow to keep up: resync with `since`.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// Events read per replay page.
const REPLAY_PAGE: u32 = 500;
/// Most queued live events written together before the socket looks at its other inputs.
const LIVE_BATCH: usize = 64;
/// How long a socket waits for a missing seq to arrive on its queue before reading the
/// timeline instead.
const REORDER_WAIT: Duration = Duration::from_millis(5);
/// A frame the client's connection has not taken within this long ends the socket: the
/// reader is gone or too slow, and its queue must not grow meanwhile.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub struct WsQuery {
    since: Option<Seq>,
    access_token: Option<String>,
}

/// `GET /v1/ws`: checks the token (bearer header or `access_token` query) before upgrading.
pub async fn upgrade(
    State(feige): State<Feige>,
    Extension(ctx): Extension<PushContext>,
    Query(q): Query<WsQuery>,
    parts: Parts,
    ws: WebSocketUpgrade,
) -> Response {
    let token = feige_api::extract::bearer(&parts).map(str::to_owned).or(q.access_token);
    let Some(token) = token else {
        return ApiError(Error::unauthorized("missing_token", "a bearer token or access_token query is required"))
            .into_response();
    };
    let who = match feige.authenticate(&token).await {
        Ok(who) => who,
        Err(e) => return ApiError(e).into_response(),
    };
    let tracked = ctx.sessions.token();
    // Small buffers: tungstenite's defaults (128 KiB each way) would make an idle socket cost
    // over 100 KiB. Clients only send heartbeats and acks.
    let ws = ws.read_buffer_size(1024).write_buffer_size(0).max_message_size(64 * 1024);
    ws.on_upgrade(move |socket| async move {
        run(socket, feige, ctx, who, q.since).await;
        drop(tracked);
    })
}

struct Socket {
    ws: WebSocket,
}

impl Socket {
    async fn send(&mut self, payload: Payload) -> bool {
        let frame = Message::Binary(frames::encode(payload).into());
        matches!(tokio::time::timeout(SEND_TIMEOUT, self.ws.send(frame)).await, Ok(Ok(())))
    }

    /// Queues a frame without flushing: several frames then go out in one write.
    async fn feed(&mut self, payload: Payload) -> bool {
        let frame = Message::Binary(frames::encode(payload).into());
        matches!(tokio::time::timeout(SEND_TIMEOUT, self.ws.feed(frame)).await, Ok(Ok(())))
    }

    async fn flush(&mut self) -> bool {
        matches!(tokio::time::timeout(SEND_TIMEOUT, self.ws.flush()).await, Ok(Ok(())))
    }

    async fn close(mut self, code: u16, reason: &'static str) {
        let _ = self.send(Payload::Kicked(Kicked { reason: reason.into() })).await;
        let close = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
        let _ = tokio::time::timeout(SEND_TIMEOUT, async {
            let _ = self.ws.send(close).await;
            let _ = self.ws.close().await;
        })
        .await;
    }
}

/// Sends every event after `cursor` from the timeline; returns the new cursor, or None if the
/// socket died.
async fn catch_up(sock: &mut Socket, feige: &Feige, who: &Identity, mut cursor: Seq) -> Result<Option<Seq>, Error> {
    let grace = Duration::from_millis(feige.config.gap_grace_ms);
    loop {
        let page = timeline::read(&feige.ports, who.user_id, cursor, REPLAY_PAGE, grace).await?;
        for e in &page.events {
            if !sock.feed(Payload::Event(frames::event(e))).await {
                return Ok(None);
            }
            metrics::counter!("feige_push_events_total").increment(1);
        }
        if !page.events.is_empty() && !sock.flush().await {
            return Ok(None);
        }
        cursor = page.next;
        if !page.has_more {
            return Ok(Some(cursor));
        }
    }
}

async fn run(ws: WebSocket, feige: Feige, ctx: PushContext, who: Identity, since: Option<Seq>) {
    // Register before reading the timeline, so nothing written meanwhile can slip between
    // the replay and the live stream; duplicates are dropped by seq below.
    let mut reg = ctx.hub.register(who.user_id, &who.sid, &who.platform);
    let mut sock = Socket { ws };
    let end = match crate::presence::online(&feige, who.user_id).await {
        Ok(()) => {
            kick_older_sockets(&feige, &ctx, &who, &reg).await;
            session_loop(&mut sock, &feige, &ctx, &who, since, &mut reg).await
        }
        // Other nodes could not find this socket: better a reconnect than a silent one.
        Err(_) => Ok(Some((close_code::SERVICE_RESTART, "backend_error"))),
    };
    ctx.hub.unregister(who.user_id, &reg.socket);
    match end {
        Ok(Some((code, reason))) => sock.close(code, reason).await,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(user = %who.user_id, error = %e, "push session failed");
            sock.close(close_code::SERVICE_RESTART, "backend_error").await;
        }
    }
    crate::presence::offline_if_gone(&feige, &ctx.hub, who.user_id).await;
}

/// Applies the kick policy: every older socket of the user that this one replaces, on any
/// node, gets `kicked` (`replaced`) and closes.
async fn kick_older_sockets(feige: &Feige, ctx: &PushContext, who: &Identity, reg: &crate::hub::Registration) {
    let platform = match feige.config.kick_policy {
        KickPolicy::Multi => return,
        KickPolicy::PerPlatform => Some(who.platform.clone()),
        KickPolicy::Single => None,
    };
    let replace = Push::Replace { user_id: who.user_id, socket: reg.socket.clone(), platform };
    ctx.sink.deliver(std::slice::from_ref(&replace)).await;
}

/// Runs until the socket should end; returns the close to send, if any.
async fn session_loop(
    sock: &mut Socket,
    feige: &Feige,
    ctx: &PushContext,
    who: &Identity,
    since: Option<Seq>,
    reg: &mut crate::hub::Registration,
) -> Result<Option<(u16, &'static str)>, Error> {
    let idle = Duration::from_secs(feige.config.ws_idle_secs.max(1));
    let mut cursor = match since {
        Some(s) => s,
        None => feige.ports.timeline.max_seq(who.user_id).await?,
    };
    let hello = Hello { cursor, heartbeat_secs: idle.as_secs() as u32, node_id: feige.config.node_id.clone() };
    if !sock.send(Payload::Hello(hello)).await {
        return Ok(None);
    }
    let Some(c) = catch_up(sock, feige, who, cursor).await? else {
        return Ok(None);
    };
    cursor = c;
    if !sock.send(Payload::Synced(Synced { cursor })).await {
        return Ok(None);
    }
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            push = reg.queue.recv() => match push {
                Some(first) => {
                    // This event and whatever else is already queued (bounded), in seq order,
                    // in one write.
                    let mut pending = BTreeMap::from([(first.seq, first)]);
                    while pending.len() < LIVE_BATCH {
                        match reg.queue.try_recv() {
                            Ok(e) => pending.insert(e.seq, e),
                            Err(_) => break,
                        };
                    }
                    let mut unflushed = false;
                    loop {
                        pending.retain(|seq, _| *seq > cursor);
                        while let Some(event) = pending.remove(&(cursor + 1)) {
                            if !sock.feed(Payload::Event(frames::event(&event))).await {
                                return Ok(None);
                            }
                            cursor = event.seq;
                            unflushed = true;
                            metrics::counter!("feige_push_events_total").increment(1);
                            let lag_ms = feige_core::now_ms().saturating_sub(event.created_at).max(0);
                            metrics::histogram!("feige_push_delivery_seconds").record(lag_ms as f64 / 1000.0);
                        }
                        if pending.is_empty() {
                            break;
                        }
                        // A gap: concurrent writers publish in no particular order, so the
                        // missing event is usually a moment behind on the queue. Wait briefly
                        // for it; only then read the timeline (which never returns past a hole).
                        match tokio::time::timeout(REORDER_WAIT, reg.queue.recv()).await {
                            Ok(Some(e)) => {
                                pending.insert(e.seq, e);
                            }
                            Ok(None) => return Ok(Some((close_code::SLOW_CONSUMER, "slow_consumer"))),
                            Err(_) => {
                                if unflushed && !sock.flush().await {
                                    return Ok(None);
                                }
                                unflushed = false;
                                let Some(c) = catch_up(sock, feige, who, cursor).await? else { return Ok(None) };
                                cursor = c;
                            }
                        }
                    }
                    if unflushed && !sock.flush().await {
                        return Ok(None);
                    }
                }
                None => return Ok(Some((close_code::SLOW_CONSUMER, "slow_consumer"))),
            },
            changed = reg.control.changed() => {
                let why = if changed.is_ok() { *reg.control.borrow() } else { Close::SlowConsumer };
                match why {
                    Close::Open => {}
                    Close::SlowConsumer => return Ok(Some((close_code::SLOW_CONSUMER, "slow_consumer"))),
                    Close::LoggedOut => return Ok(Some((close_code::LOGGED_OUT, "logged_out"))),
                    Close::Replaced => return Ok(Some((close_code::REPLACED, "replaced"))),
                }
            }
            msg = sock.ws.recv() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                    if let Ok(ClientFrame { payload: Some(client_frame::Payload::Heartbeat(hb)) }) = ClientFrame::decode(bytes.as_ref())
                        && !sock.send(Payload::Pong(Pong { ts: hb.ts })).await
                    {
                        return Ok(None);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => deadline.as_mut().reset(tokio::time::Instant::now() + idle),
            },
            _ = &mut deadline => return Ok(Some((close_code::IDLE, "idle_timeout"))),
            _ = ctx.shutdown.cancelled() => return Ok(Some((close_code::SERVICE_RESTART, "shutdown"))),
        }
    }
}
