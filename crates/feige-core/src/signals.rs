//! In-process wake-ups: "user U's timeline reached seq S". Long-polling `sync` waits on these
//! instead of polling the store when writer and reader share a process; across processes
//! (Lambda) the waiter also re-reads on a short interval, so nothing depends on them for
//! correctness.

use crate::ids::UserId;
use crate::model::Seq;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Per-user latest-seq watches.
#[derive(Default)]
pub struct UserSignals {
    users: Mutex<HashMap<UserId, watch::Sender<Seq>>>,
}

impl UserSignals {
    /// A receiver that changes whenever `user`'s timeline grows in this process.
    pub fn subscribe(&self, user: UserId) -> watch::Receiver<Seq> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Announces that `user`'s timeline now reaches `seq`.
    pub fn bump(&self, user: UserId, seq: Seq) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(&user) {
            if tx.receiver_count() == 0 {
                users.remove(&user);
            } else {
                tx.send_modify(|s| *s = (*s).max(seq));
            }
        }
    }
}
