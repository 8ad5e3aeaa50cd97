//! The sockets of this process, by user. Pushes from the bus are handed to each of the user's
//! sockets through a bounded queue; a socket whose queue is full is told to close (its client
//! resumes with `since`), so one slow reader never holds up the others.

use feige_core::UserId;
use feige_core::model::Push;
use feige_core::ports::PushSink;
use std::collections::HashMap;
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
}

struct Slot {
    id: u64,
    sid: String,
    queue: mpsc::Sender<Push>,
    control: watch::Sender<Close>,
}

/// A registered socket's receiving ends.
pub struct Registration {
    pub id: u64,
    pub queue: mpsc::Receiver<Push>,
    pub control: watch::Receiver<Close>,
}

/// Sockets by user.
pub struct Hub {
    users: Mutex<HashMap<UserId, Vec<Slot>>>,
    next_id: AtomicU64,
    queue_len: usize,
}

impl Hub {
    /// A hub whose sockets queue at most `queue_len` pushes.
    pub fn new(queue_len: usize) -> Self {
        Hub { users: Mutex::default(), next_id: AtomicU64::new(1), queue_len: queue_len.max(1) }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Slot>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a socket of `user` in session `sid`.
    pub fn register(&self, user: UserId, sid: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, rx) = mpsc::channel(self.queue_len);
        let (control, control_rx) = watch::channel(Close::Open);
        self.slots().entry(user).or_default().push(Slot { id, sid: sid.to_owned(), queue, control });
        metrics::gauge!("feige_ws_connections").increment(1.0);
        Registration { id, queue: rx, control: control_rx }
    }

    /// Removes a socket (idempotent).
    pub fn unregister(&self, user: UserId, id: u64) {
        let mut users = self.slots();
        if let Some(slots) = users.get_mut(&user) {
            let before = slots.len();
            slots.retain(|s| s.id != id);
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

impl PushSink for Hub {
    fn deliver(&self, pushes: &[Push]) {
        let mut users = self.slots();
        for push in pushes {
            let Some(slots) = users.get_mut(&push.user_id()) else {
                continue;
            };
            match push {
                Push::Event { .. } => slots.retain(|slot| match slot.queue.try_send(push.clone()) {
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
                }),
                Push::CloseSession { sid, .. } => {
                    for slot in slots.iter().filter(|s| &s.sid == sid) {
                        let _ = slot.control.send(Close::LoggedOut);
                    }
                }
            }
        }
        users.retain(|_, slots| !slots.is_empty());
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
        let hub = Hub::new(8);
        let mut a1 = hub.register(UserId(1), "s1");
        let mut a2 = hub.register(UserId(1), "s2");
        let mut b = hub.register(UserId(2), "s3");
        hub.deliver(&[ev(1, 1)]);
        assert!(a1.queue.try_recv().is_ok());
        assert!(a2.queue.try_recv().is_ok());
        assert!(b.queue.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_closes_only_that_socket() {
        let hub = Hub::new(2);
        let slow = hub.register(UserId(1), "slow");
        let mut fast = hub.register(UserId(1), "fast");
        for seq in 1..=3 {
            hub.deliver(&[ev(1, seq)]);
            while fast.queue.try_recv().is_ok() {}
        }
        assert_eq!(*slow.control.borrow(), Close::SlowConsumer);
        assert_eq!(*fast.control.borrow(), Close::Open);
        assert_eq!(hub.sockets_of(UserId(1)), 1);
    }

    #[test]
    fn close_session_targets_only_that_session() {
        let hub = Hub::new(2);
        let a = hub.register(UserId(1), "a");
        let b = hub.register(UserId(1), "b");
        hub.deliver(&[Push::CloseSession { user_id: UserId(1), sid: "a".into() }]);
        assert_eq!(*a.control.borrow(), Close::LoggedOut);
        assert_eq!(*b.control.borrow(), Close::Open);
    }
}
