//! Use-case guarantees that need a backend to fail on cue: a send interrupted halfway is
//! reported as 503 and completed by its retry, with nothing duplicated.

#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::{Seq, TimelineEntry};
use feige_core::ports::{Inserted, TimelineStore};
use feige_core::usecases::{SendRequest, Target};
use feige_core::{Config, Error, Feige, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tempfile::TempDir;

/// A timeline store whose writes fail while `down` is set.
struct Flaky {
    inner: Arc<dyn TimelineStore>,
    down: AtomicBool,
}

#[async_trait]
impl TimelineStore for Flaky {
    async fn insert(&self, e: &TimelineEntry) -> Result<Inserted> {
        Ok(self.insert_many(std::slice::from_ref(e)).await?.remove(0))
    }
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("timeline", "connection refused"));
        }
        self.inner.insert_many(entries).await
    }
    async fn read(&self, user: UserId, after: Seq, limit: u32) -> Result<Vec<TimelineEntry>> {
        self.inner.read(user, after, limit).await
    }
    async fn max_seq(&self, user: UserId) -> Result<Seq> {
        self.inner.max_seq(user).await
    }
    async fn find(&self, user: UserId, key: &str) -> Result<Option<Seq>> {
        self.inner.find(user, key).await
    }
}

/// Every event of a user, following `has_more` like a client.
async fn sync_all(feige: &Feige, who: &feige_core::usecases::Identity) -> Vec<feige_core::model::Event> {
    let (mut cursor, mut out) = (0, Vec::new());
    loop {
        let page = feige.sync(who, cursor, 10, Duration::ZERO).await.unwrap();
        out.extend(page.events);
        cursor = page.next;
        if !page.has_more {
            return out;
        }
    }
}

#[tokio::test]
async fn an_interrupted_send_is_a_503_and_its_retry_completes_it() {
    let dir = TempDir::new().unwrap();
    let config = Config::from_lookup(|k| match k {
        "FEIGE_DATA_DIR" => Some(dir.path().display().to_string()),
        "FEIGE_TOKEN_SECRET" => Some("usecase-test-secret-0123".into()),
        "FEIGE_GAP_GRACE_MS" => Some("300".into()),
        _ => None,
    })
    .unwrap();
    let mut backends = feige_store::connect(&config).await.unwrap();
    let flaky = Arc::new(Flaky { inner: backends.ports.timeline.clone(), down: false.into() });
    backends.ports.timeline = flaky.clone();
    let feige = Feige::new(backends.ports, config, b"usecase-test-secret-0123");
    feige.register("sender", "password-1", None).await.unwrap();
    let bob = feige.register("receiver", "password-1", None).await.unwrap();
    let a = feige
        .authenticate(&feige.login("sender", "password-1", None, None).await.unwrap().tokens.access_token)
        .await
        .unwrap();
    let b = feige
        .authenticate(&feige.login("receiver", "password-1", None, None).await.unwrap().tokens.access_token)
        .await
        .unwrap();
    let req = || SendRequest {
        client_msg_id: "once".into(),
        to: Target::User(bob.user_id),
        kind: "text".into(),
        body: "hi".into(),
    };

    // The timeline goes down after the history row is written: the client sees 503.
    flaky.down.store(true, Ordering::SeqCst);
    let err = feige.send(&a, req()).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (503, "backend_unavailable"));
    assert!(
        feige.sync(&b, 0, 10, Duration::ZERO).await.is_err()
            || feige.sync(&b, 0, 10, Duration::ZERO).await.unwrap().events.is_empty()
    );

    // Back up: the retry returns the original message and fills in the timelines.
    flaky.down.store(false, Ordering::SeqCst);
    let done = feige.send(&a, req()).await.unwrap();
    assert!(!done.created, "the retry must not create a second message");
    assert_eq!(done.conv_seq, 1);
    assert!(done.seq > 0);
    // The failed attempt's seqs are holes now; the reader steps over them after the grace.
    let got = sync_all(&feige, &b).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].msg_id.as_deref(), Some(done.msg_id.as_str()));
    // Retrying once more changes nothing.
    let again = feige.send(&a, req()).await.unwrap();
    assert_eq!((again.msg_id, again.seq), (done.msg_id.clone(), done.seq));
    assert_eq!(sync_all(&feige, &b).await.len(), 1);
    assert_eq!(sync_all(&feige, &a).await.len(), 1);

    // A second interrupted send, completed by its retry the same way.
    let req2 = SendRequest { client_msg_id: "half".into(), ..req() };
    flaky.down.store(true, Ordering::SeqCst);
    let _ = feige.send(&a, req2.clone()).await.unwrap_err();
    flaky.down.store(false, Ordering::SeqCst);
    let fixed = feige.send(&a, req2).await.unwrap();
    assert_eq!(fixed.conv_seq, 2);
    assert_eq!(sync_all(&feige, &b).await.len(), 2);
    assert_eq!(sync_all(&feige, &a).await.len(), 2);
}
