//! Writing to and reading from per-user timelines without ever skipping a hole.
//!
//! Writers take a seq from the `SeqAllocator`, then insert at it. Two writers can never share
//! a slot: the store's unique (user, seq) key decides, and the loser takes a new seq. So a
//! timeline can only have *holes*: seqs that were allocated but whose writer is still on its
//! way (or died). A reader must never return an entry past a hole that may still fill, or the
//! client's cursor would skip it. So the reader stops at the first hole; if the entry after
//! the hole was written more than `grace` ago, the hole's writer is presumed dead and the
//! reader writes a *filler* into it (a `None` event). The unique key again decides: either the
//! filler lands and the late writer, on `SeqTaken`, re-allocates and appends after it, or the
//! writer landed first and the reader sees the real event. Fillers are invisible to clients;
//! they only let cursors move on. A writer that abandons a seq itself (its event was already
//! in the timeline) fills it at once, so in normal operation no reader ever waits.

use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::{Event, Seq, TimelineEntry};
use crate::now_ms;
use crate::ports::{Inserted, Ports, SeqAllocator, TimelineStore};
use std::time::Duration;

/// How often a reader re-checks a young hole.
const HOLE_POLL: Duration = Duration::from_millis(3);
/// Upper bound on retries when a seq keeps being taken (only under pathological races).
const MAX_ATTEMPTS: usize = 32;

/// Takes the next seq of `user`, initialising a cold counter from the durable high-water mark
/// (the timeline itself), so sequences never go backwards after a cache flush or restart.
pub async fn next_seq(seqs: &dyn SeqAllocator, timeline: &dyn TimelineStore, user: UserId) -> Result<Seq> {
    for _ in 0..3 {
        if let Some(seq) = seqs.allocate(user, 1).await? {
            return Ok(seq);
        }
        let floor = timeline.max_seq(user).await?;
        seqs.init(user, floor).await?;
    }
    Err(Error::internal(format!("sequence counter for user {user} would not initialise")))
}

fn filler(user: UserId, seq: Seq) -> TimelineEntry {
    TimelineEntry { user_id: user, seq, event_key: format!("gap:{seq}"), event: None, written_at: now_ms() }
}

/// Appends `event` to each user's timeline (each gets its own seq) and returns the events as
/// written, in input order. Idempotent per (user, event key): an event already present is
/// returned with its existing seq. `maybe_present` says a previous attempt may have written
/// some of them (a retried send), so look before allocating.
pub async fn append(ports: &Ports, items: Vec<(UserId, Event)>, maybe_present: bool) -> Result<Vec<(UserId, Event)>> {
    let timeline = ports.timeline.as_ref();
    let seqs = ports.seqs.as_ref();
    let mut done: Vec<Option<Event>> = vec![None; items.len()];
    let mut pending: Vec<usize> = Vec::with_capacity(items.len());
    for (i, (user, event)) in items.iter().enumerate() {
        let existing = if maybe_present { timeline.find(*user, &event.dedup_key()).await? } else { None };
        match existing {
            Some(seq) => done[i] = Some(Event { seq, ..event.clone() }),
            None => pending.push(i),
        }
    }
    for _ in 0..MAX_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        // One round trip for the whole batch; cold counters are initialised one by one.
        let users: Vec<UserId> = pending.iter().map(|&i| items[i].0).collect();
        let allocated = seqs.allocate_each(&users).await?;
        let mut entries = Vec::with_capacity(pending.len());
        for (&i, got) in pending.iter().zip(allocated) {
            let (user, event) = &items[i];
            let seq = match got {
                Some(seq) => seq,
                None => next_seq(seqs, timeline, *user).await?,
            };
            entries.push(TimelineEntry {
                user_id: *user,
                seq,
                event_key: event.dedup_key(),
                event: Some(Event { seq, ..event.clone() }),
                written_at: now_ms(),
            });
        }
        let outcomes = timeline.insert_many(&entries).await?;
        let mut retry = Vec::new();
        for ((i, entry), outcome) in pending.iter().zip(entries).zip(outcomes) {
            match outcome {
                Inserted::Ok => done[*i] = entry.event,
                Inserted::SeqTaken => {
                    // Our counter is behind the timeline (another process, a flushed cache):
                    // catch up in one step instead of probing seq by seq.
                    seqs.init(entry.user_id, timeline.max_seq(entry.user_id).await?).await?;
                    retry.push(*i);
                }
                Inserted::AlreadyAt(seq) => {
                    // Someone (a concurrent retry) wrote it first: release our slot at once.
                    timeline.insert(&filler(entry.user_id, entry.seq)).await?;
                    done[*i] = entry.event.map(|e| Event { seq, ..e });
                }
            }
        }
        pending = retry;
    }
    if !pending.is_empty() {
        return Err(Error::internal("timeline seqs kept being taken"));
    }
    Ok(items.into_iter().zip(done).filter_map(|((user, _), event)| event.map(|e| (user, e))).collect())
}

/// One page read from a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Events in seq order, fillers left out.
    pub events: Vec<Event>,
    /// The cursor to pass next time: the last seq consumed (fillers included).
    pub next: Seq,
    /// Whether more entries are already there.
    pub has_more: bool,
}

/// Reads up to `limit` events after `after`, never past a hole that may still fill.
pub async fn read(ports: &Ports, user: UserId, after: Seq, limit: u32, grace: Duration) -> Result<Page> {
    let timeline = ports.timeline.as_ref();
    let limit = limit.max(1);
    loop {
        let raw = timeline.read(user, after, limit + 1).await?;
        let mut events = Vec::new();
        let mut cursor = after;
        let mut hole_successor = None;
        for entry in &raw {
            if events.len() as u32 == limit {
                break;
            }
            if entry.seq != cursor + 1 {
                hole_successor = Some(entry.written_at);
                break;
            }
            cursor = entry.seq;
            if let Some(e) = &entry.event {
                events.push(e.clone());
            }
        }
        let consumed_all = raw.last().is_none_or(|last| last.seq <= cursor);
        match hole_successor {
            None => {
                return Ok(Page { events, next: cursor, has_more: !consumed_all });
            }
            Some(_) if !events.is_empty() || cursor > after => {
                return Ok(Page { events, next: cursor, has_more: true });
            }
            Some(written_at) => {
                let age = now_ms().saturating_sub(written_at);
                if age >= grace.as_millis() as i64 {
                    let seq = cursor + 1;
                    tracing::warn!(%user, seq, "filling a timeline hole left by a writer that never came back");
                    timeline.insert(&filler(user, seq)).await?;
                } else {
                    tokio::time::sleep(HOLE_POLL).await;
                }
            }
        }
    }
}
