//! The run's shared state: users, groups, receivers (sockets or sync readers), counters,
//! histograms, and the ledger of acked messages that deliveries are checked against.
//!
//! Every message carries `<tag>|<key>|<micros>` as its text body: the run's random tag (so
//! nothing else counts), a key unique within the run, and the scheduled send time relative
//! to the run's clock. A receiver computes the end-to-end latency from the body alone and
//! keeps the set of keys it received; at the end the ledger says which receivers owed each
//! acked message, so lost, duplicated and misdelivered copies are exact counts.

use crate::Options;
use crate::target::Target;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Distinct error kinds kept by name; the rest are summed under "other".
const MAX_ERROR_KINDS: usize = 64;
/// Shards of the end-to-end histogram (receivers record concurrently).
const E2E_SHARDS: usize = 16;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: i64,
    pub token: String,
}

/// A group created for the run.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: i64,
    /// Indexes into the users, owner first.
    pub members: Vec<usize>,
    pub member_set: HashSet<usize>,
}

/// Where a message goes (indexes into users / groups).
#[derive(Debug, Clone, Copy)]
pub(crate) enum To {
    User(usize),
    Group(usize),
}

/// An acked message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub key: u64,
    pub sender: usize,
    pub to: To,
}

/// What one socket (across its reconnects) or one sync reader has seen.
#[derive(Debug, Default)]
pub(crate) struct RecvState {
    /// Highest seq seen (None until the first Hello or event).
    pub cursor: Option<u64>,
    pub seen: HashSet<u64>,
    pub synced: bool,
}

/// A socket or a sync reader, of one user.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub user: usize,
    pub state: Mutex<RecvState>,
}

/// Running totals, readable while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub send_attempts: AtomicU64,
    pub sends: AtomicU64,
    /// Deliveries owed by the acked messages so far.
    pub expected: AtomicU64,
    /// First copies of this run's messages received.
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    pub gaps: AtomicU64,
    pub errors: AtomicU64,
    pub connects: AtomicU64,
    pub unexpected_closes: AtomicU64,
    /// Sockets currently past their Synced frame.
    pub synced: AtomicI64,
    pub pongs: AtomicU64,
    pub sync_requests: AtomicU64,
}

/// The run's shared state.
pub(crate) struct Shared {
    pub opts: Options,
    pub target: Target,
    pub http: reqwest::Client,
    /// The run's clock: message bodies carry microseconds since this instant.
    pub origin: Instant,
    pub tag: String,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub receivers: Vec<Receiver>,
    /// Receivers of each user.
    pub by_user: Vec<Vec<usize>>,
    pub sources: Vec<Ipv4Addr>,
    pub next_source: AtomicUsize,
    pub next_key: AtomicU64,
    pub c: Counters,
    pub error_kinds: Mutex<BTreeMap<String, u64>>,
    pub ledger: Mutex<Vec<Sent>>,
    pub send_lat: Mutex<Histogram<u64>>,
    pub e2e_lat: Vec<Mutex<Histogram<u64>>>,
    pub connect_lat: Mutex<Histogram<u64>>,
    pub synced_lat: Mutex<Histogram<u64>>,
    pub sync_lat: Mutex<Histogram<u64>>,
    /// Whether arrivals record end-to-end latency (not when messages wait for offline users).
    pub record_e2e: bool,
    /// Cancelled when the run ends, whichever way.
    pub root: CancellationToken,
    pub nofile_limit: u64,
}

/// The final account of deliveries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub misdelivered: u64,
    pub unacked: u64,
}

impl Shared {
    /// Builds the state; `receiver_users[r]` is the user of receiver `r`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: Options,
        target: Target,
        http: reqwest::Client,
        tag: String,
        users: Vec<User>,
        groups: Vec<Group>,
        receiver_users: Vec<usize>,
        sources: Vec<Ipv4Addr>,
        root: CancellationToken,
        nofile_limit: u64,
    ) -> Shared {
        let mut by_user = vec![Vec::new(); users.len()];
        for (r, &u) in receiver_users.iter().enumerate() {
            by_user[u].push(r);
        }
        let record_e2e =
            matches!(opts.scenario, crate::Scenario::Direct | crate::Scenario::Group | crate::Scenario::Idle);
        Shared {
            opts,
            target,
            http,
            origin: Instant::now(),
            tag,
            users,
            groups,
            receivers: receiver_users
                .into_iter()
                .map(|user| Receiver { user, state: Mutex::new(RecvState::default()) })
                .collect(),
            by_user,
            sources,
            next_source: AtomicUsize::new(0),
            next_key: AtomicU64::new(0),
            c: Counters::default(),
            error_kinds: Mutex::default(),
            ledger: Mutex::default(),
            send_lat: Mutex::new(histogram()),
            e2e_lat: (0..E2E_SHARDS).map(|_| Mutex::new(histogram())).collect(),
            connect_lat: Mutex::new(histogram()),
            synced_lat: Mutex::new(histogram()),
            sync_lat: Mutex::new(histogram()),
            record_e2e,
            root,
            nofile_limit,
        }
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: impl Into<String>) {
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        let mut kinds = lock(&self.error_kinds);
        let kind = kind.into();
        if kinds.len() < MAX_ERROR_KINDS || kinds.contains_key(&kind) {
            *kinds.entry(kind).or_default() += 1;
        } else {
            *kinds.entry("other".into()).or_default() += 1;
        }
    }

    /// Microseconds on the run's clock.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The text body of message `key` scheduled at `at_us`.
    pub fn body(&self, key: u64, at_us: u64) -> String {
        format!("{}|{key}|{at_us}", self.tag)
    }

    /// `(key, scheduled micros)` if `text` is a body of this run.
    pub fn parse_body(&self, text: &str) -> Option<(u64, u64)> {
        let mut parts = text.split('|');
        if parts.next()? != self.tag {
            return None;
        }
        let key = parts.next()?.parse().ok()?;
        let at = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((key, at))
    }

    fn is_member(&self, s: &Sent, user: usize) -> bool {
        match s.to {
            To::User(r) => user == s.sender || user == r,
            To::Group(g) => self.groups[g].member_set.contains(&user),
        }
    }

    /// Receivers owed a message: every receiver of every member (the sender's own included:
    /// every device of a user gets every event).
    pub fn owed(&self, sender: usize, to: To) -> u64 {
        match to {
            To::User(r) => (self.by_user[sender].len() + self.by_user[r].len()) as u64,
            To::Group(g) => self.groups[g].members.iter().map(|&m| self.by_user[m].len() as u64).sum(),
        }
    }

    /// Records an acked send.
    pub fn acked(&self, key: u64, sender: usize, to: To) {
        self.c.expected.fetch_add(self.owed(sender, to), Ordering::Relaxed);
        self.c.sends.fetch_add(1, Ordering::Relaxed);
        lock(&self.ledger).push(Sent { key, sender, to });
    }

    /// One event arrived at receiver `rid` (over its socket or a sync page). `text` is the
    /// message's text body, if it has one.
    pub fn on_event(&self, rid: usize, seq: u64, kind: &str, text: Option<&str>) {
        let ours = if kind == "message" { text.and_then(|t| self.parse_body(t)) } else { None };
        let now = self.now_us();
        let mut st = lock(&self.receivers[rid].state);
        let in_order = match st.cursor {
            Some(c) if seq <= c => false,
            Some(c) => {
                if seq > c + 1 {
                    self.c.gaps.fetch_add(seq - c - 1, Ordering::Relaxed);
                }
                true
            }
            None => true,
        };
        if in_order {
            st.cursor = Some(seq);
        }
        if let Some((key, at)) = ours {
            if !st.seen.insert(key) {
                self.c.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            drop(st);
            self.c.delivered.fetch_add(1, Ordering::Relaxed);
            if self.record_e2e {
                lock(&self.e2e_lat[rid % E2E_SHARDS]).saturating_record(now.saturating_sub(at).max(1));
            }
        }
        if !in_order {
            self.c.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks every acked message against every receiver that owed it.
    pub fn verdict(&self) -> Verdict {
        let ledger = lock(&self.ledger);
        let states: Vec<MutexGuard<'_, RecvState>> = self.receivers.iter().map(|r| lock(&r.state)).collect();
        let mut v = Verdict::default();
        let mut by_key: HashMap<u64, Sent> = HashMap::with_capacity(ledger.len());
        for s in ledger.iter() {
            by_key.insert(s.key, *s);
            let mut check = |user: usize| {
                for &r in &self.by_user[user] {
                    v.expected += 1;
                    if states[r].seen.contains(&s.key) {
                        v.received += 1;
                    } else {
                        v.lost += 1;
                    }
                }
            };
            match s.to {
                To::User(r) => {
                    check(s.sender);
                    check(r);
                }
                To::Group(g) => self.groups[g].members.iter().for_each(|&m| check(m)),
            }
        }
        for (r, st) in states.iter().enumerate() {
            let user = self.receivers[r].user;
            for key in &st.seen {
                match by_key.get(key) {
                    None => v.unacked += 1,
                    Some(s) if !self.is_member(s, user) => v.misdelivered += 1,
                    Some(_) => {}
                }
            }
        }
        v
    }

    /// Waits until every owed delivery arrived, at most `within`. True if they all did.
    pub async fn await_deliveries(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let owed = self.c.expected.load(Ordering::Relaxed);
            if self.c.delivered.load(Ordering::Relaxed) >= owed && self.verdict().lost == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.root.is_cancelled() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The next client source address, round-robin.
    pub fn next_source(&self) -> Ipv4Addr {
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        self.sources[i % self.sources.len()]
    }

    /// The end-to-end histogram, merged over its shards.
    pub fn e2e(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.e2e_lat {
            let _ = all.add(&*lock(shard));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Scenario};

    /// Two users with two sockets each (receivers 0,2 of user 0 and 1,3 of user 1), a third
    /// user without sockets, and a group of users 0 and 2.
    fn shared() -> Shared {
        let opts = Options::new(Scenario::Direct, "http://127.0.0.1:1");
        let target = crate::target::loopback(&opts.url).expect("target");
        let users = (0..3).map(|i| User { id: i + 1, token: String::new() }).collect();
        let groups = vec![Group { id: 7, members: vec![0, 2], member_set: [0, 2].into_iter().collect() }];
        Shared::new(
            opts,
            target,
            reqwest::Client::new(),
            "lgtest".into(),
            users,
            groups,
            vec![0, 1, 0, 1],
            vec![Ipv4Addr::LOCALHOST],
            CancellationToken::new(),
            1024,
        )
    }

    fn deliver(sh: &Shared, rid: usize, seq: u64, key: u64) {
        sh.on_event(rid, seq, "message", Some(&sh.body(key, 0)));
    }

    #[test]
    fn bodies_round_trip_and_foreign_ones_are_ignored() {
        let sh = shared();
        assert_eq!(sh.parse_body(&sh.body(42, 1234)), Some((42, 1234)));
        assert_eq!(sh.parse_body("lgother|42|1234"), None);
        assert_eq!(sh.parse_body("lgtest|42|1234|5"), None);
        assert_eq!(sh.parse_body("hello"), None);
    }

    #[test]
    fn every_owed_delivery_is_accounted_for() {
        let sh = shared();
        sh.acked(0, 0, To::User(1));
        assert_eq!(sh.c.expected.load(Ordering::Relaxed), 4);
        for rid in 0..4 {
            deliver(&sh, rid, 1, 0);
        }
        assert_eq!(sh.verdict(), Verdict { expected: 4, received: 4, ..Verdict::default() });
        assert_eq!(sh.c.duplicates.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_missing_delivery_is_lost() {
        let sh = shared();
        sh.acked(0, 0, To::User(1));
        deliver(&sh, 0, 1, 0);
        deliver(&sh, 1, 1, 0);
        deliver(&sh, 2, 1, 0);
        let v = sh.verdict();
        assert_eq!((v.expected, v.received, v.lost), (4, 3, 1));
    }

    #[test]
    fn a_second_copy_is_a_duplicate_and_an_old_seq_is_out_of_order() {
        let sh = shared();
        sh.acked(0, 0, To::User(1));
        deliver(&sh, 0, 1, 0);
        deliver(&sh, 0, 1, 0);
        assert_eq!(sh.c.duplicates.load(Ordering::Relaxed), 1);
        sh.on_event(0, 1, "read", None);
        assert_eq!(sh.c.out_of_order.load(Ordering::Relaxed), 1);
        sh.on_event(0, 5, "read", None);
        assert_eq!(sh.c.gaps.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn deliveries_to_strangers_and_unacked_sends_are_caught() {
        let sh = shared();
        // Group 0 is users 0 and 2; user 1 (receivers 1, 3) is not a member.
        sh.acked(0, 0, To::Group(0));
        assert_eq!(sh.c.expected.load(Ordering::Relaxed), 2);
        deliver(&sh, 0, 1, 0);
        deliver(&sh, 2, 1, 0);
        deliver(&sh, 1, 1, 0);
        // Key 9 was never acked.
        deliver(&sh, 3, 1, 9);
        let v = sh.verdict();
        assert_eq!((v.expected, v.received, v.lost, v.misdelivered, v.unacked), (2, 2, 0, 1, 1));
    }

    #[tokio::test]
    async fn waiting_for_deliveries_is_bounded() {
        let sh = shared();
        sh.acked(0, 0, To::User(1));
        let t = Instant::now();
        assert!(!sh.await_deliveries(std::time::Duration::from_millis(200)).await);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        for rid in 0..4 {
            deliver(&sh, rid, 1, 0);
        }
        assert!(sh.await_deliveries(std::time::Duration::ZERO).await);
    }
}
