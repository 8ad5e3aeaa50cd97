//! The sockets of this process, by user. Pushes from the bus are handed to each of the user's
//! sockets through a bounded queue; a socket whose queue is full is told to close (its client
//! resumes with `since`), so one slow reader never holds up the others.

use feige_core::model::{Event, Push, SocketRef};
use feige_core::ports::PushSink;
use feige_core::{UserId, now_ms};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// Why the hub wants a socket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Keep going.
    Open,
    /// Its queue overflowed.
    SlowConsumer,
    /// Its session logged out (or was replaced by a new login of the device).
    LoggedOut,
    /// A newer socket of the user replaced it (the kick policy).
    Replaced,
}

struct Slot {
    socket: SocketRef,
    sid: String,
    platform: String,
    queue: mpsc::Sender<Arc<Event>>,
    control: watch::Sender<Close>,
}

/// A registered socket's receiving ends.
pub struct Registration {
    /// This socket, tier-wide.
    pub socket: SocketRef,
    /// Events for this socket, shared with the user's other sockets (a pointer per slot keeps
    /// an idle socket's queue small).
    pub queue: mpsc::Receiver<Arc<Event>>,
    pub control: watch::Receiver<Close>,
}

/// Sockets by user.
pub struct Hub {
    node: String,
    users: Mutex<HashMap<UserId, Vec<Slot>>>,
    next_id: AtomicU64,
    queue_len: usize,
}

impl Hub {
    /// The hub of push node `node`, whose sockets queue at most `queue_len` pushes.
    pub fn new(node: &str, queue_len: usize) -> Self {
        Hub { node: node.to_owned(), users: Mutex::default(), next_id: AtomicU64::new(1), queue_len: queue_len.max(1) }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Slot>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a socket of `user` in session `sid` on `platform`.
    pub fn register(&self, user: UserId, sid: &str, platform: &str) -> Registration {
        let socket = SocketRef {
            opened_at: now_ms(),
            node: self.node.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let (queue, rx) = mpsc::channel(self.queue_len);
        let (control, control_rx) = watch::channel(Close::Open);
        let slot = Slot { socket: socket.clone(), sid: sid.to_owned(), platform: platform.to_owned(), queue, control };
        self.slots().entry(user).or_default().push(slot);
        metrics::gauge!("feige_ws_connections").increment(1.0);
        Registration { socket, queue: rx, control: control_rx }
    }

    /// Removes a socket (idempotent).
    pub fn unregister(&self, user: UserId, socket: &SocketRef) {
        let mut users = self.slots();
        if let Some(slots) = users.get_mut(&user) {
            let before = slots.len();
            slots.retain(|s| s.socket != *socket);
            if slots.len() < before {
                metrics::gauge!("feige_ws_connections").decrement(1.0);
            }
            if slots.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// Number of sockets open for a user.
    pub fn sockets_of(&self, user: UserId) -> usize {
        self.slots().get(&user).map_or(0, Vec::len)
    }

    /// The users with at least one socket here.
    pub fn users(&self) -> Vec<UserId> {
        self.slots().keys().copied().collect()
    }

    /// Total sockets open.
    pub fn len(&self) -> usize {
        self.slots().values().map(Vec::len).sum()
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl PushSink for Hub {
    async fn deliver(&self, pushes: &[Push]) {
        self.deliver_local(pushes);
    }
}

impl Hub {
    /// Queues pushes on this node's sockets (never waits).
    pub fn deliver_local(&self, pushes: &[Push]) {
        let mut users = self.slots();
        let mut emptied = Vec::new();
        for push in pushes {
            let Some(slots) = users.get_mut(&push.user_id()) else {
                continue;
            };
            match push {
                Push::Event { event, .. } => {
                    let event = Arc::new(event.clone());
                    slots.retain(|slot| match slot.queue.try_send(event.clone()) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!("feige_ws_slow_disconnects_total").increment(1);
                            let _ = slot.control.send(Close::SlowConsumer);
                            metrics::gauge!("feige_ws_connections").decrement(1.0);
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            metrics::gauge!("feige_ws_connections").decrement(1.0);
                            false
                        }
                    });
                    if slots.is_empty() {
                        emptied.push(push.user_id());
                    }
                }
                Push::CloseSession { sid, .. } => {
                    for slot in slots.iter().filter(|s| &s.sid == sid) {
                        let _ = slot.control.send(Close::LoggedOut);
                    }
                }
                Push::Replace { socket, platform, .. } => {
                    let replaced = |s: &Slot| s.socket < *socket && platform.as_ref().is_none_or(|p| *p == s.platform);
                    for slot in slots.iter().filter(|s| replaced(s)) {
                        let _ = slot.control.send(Close::Replaced);
                    }
                }
            }
        }
        // Only the users touched here (never a scan of every socket of the node per push).
        for user in emptied {
            if users.get(&user).is_some_and(Vec::is_empty) {
                users.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feige_core::ConversationId;
    use feige_core::model::Event;

    fn ev(user: i64, seq: u64) -> Push {
        Push::Event {
            user_id: UserId(user),
            event: Event {
                seq,
                kind: "message".into(),
                conversation_id: ConversationId::direct(UserId(1), UserId(2)),
                conv_seq: None,
                msg_id: None,
                sender_id: None,
                msg_type: None,
                body: None,
                created_at: 0,
                extra: Default::default(),
            },
        }
    }

    #[test]
    fn every_socket_of_the_user_gets_the_push_and_nobody_else() {
        let hub = Hub::new("n1", 8);
        let mut a1 = hub.register(UserId(1), "s1", "ios");
        let mut a2 = hub.register(UserId(1), "s2", "ios");
        let mut b = hub.register(UserId(2), "s3", "ios");
        hub.deliver_local(&[ev(1, 1)]);
        assert!(a1.queue.try_recv().is_ok());
        assert!(a2.queue.try_recv().is_ok());
        assert!(b.queue.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_closes_only_that_socket() {
        let hub = Hub::new("n1", 2);
        let slow = hub.register(UserId(1), "slow", "ios");
        let mut fast = hub.register(UserId(1), "fast", "ios");
        for seq in 1..=3 {
            hub.deliver_local(&[ev(1, seq)]);
            while fast.queue.try_recv().is_ok() {}
        }
        assert_eq!(*slow.control.borrow(), Close::SlowConsumer);
        assert_eq!(*fast.control.borrow(), Close::Open);
        assert_eq!(hub.sockets_of(UserId(1)), 1);
    }

    #[test]
    fn close_session_targets_only_that_session() {
        let hub = Hub::new("n1", 2);
        let a = hub.register(UserId(1), "a", "ios");
        let b = hub.register(UserId(1), "b", "ios");
        hub.deliver_local(&[Push::CloseSession { user_id: UserId(1), sid: "a".into() }]);
        assert_eq!(*a.control.borrow(), Close::LoggedOut);
        assert_eq!(*b.control.borrow(), Close::Open);
    }

    #[test]
    fn replace_closes_only_older_conflicting_sockets() {
        let hub = Hub::new("n1", 2);
        let old_ios = hub.register(UserId(1), "a", "ios");
        let old_web = hub.register(UserId(1), "b", "web");
        let new_ios = hub.register(UserId(1), "c", "ios");
        let other_user = hub.register(UserId(2), "d", "ios");
        let replace = |platform: Option<&str>| Push::Replace {
            user_id: UserId(1),
            socket: new_ios.socket.clone(),
            platform: platform.map(str::to_owned),
        };
        hub.deliver_local(&[replace(Some("ios"))]);
        assert_eq!(*old_ios.control.borrow(), Close::Replaced);
        assert_eq!(*old_web.control.borrow(), Close::Open, "another platform stays");
        assert_eq!(*new_ios.control.borrow(), Close::Open, "the new socket never kicks itself");
        hub.deliver_local(&[replace(None)]);
        assert_eq!(*old_web.control.borrow(), Close::Replaced);
        assert_eq!(*new_ios.control.borrow(), Close::Open);
        assert_eq!(*other_user.control.borrow(), Close::Open);
    }

    #[test]
    fn sockets_order_by_opening_time_then_node_then_id() {
        let a = SocketRef { opened_at: 5, node: "b".into(), id: 1 };
        let b = SocketRef { opened_at: 6, node: "a".into(), id: 0 };
        let c = SocketRef { opened_at: 6, node: "a".into(), id: 2 };
        assert!(a < b && b < c);
    }
}
