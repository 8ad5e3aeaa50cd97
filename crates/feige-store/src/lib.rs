//! Feige's storage adapters, one module per backend, picked by URL scheme. This is the only
//! crate that names concrete drivers.
//!
//! | port | embedded | real |
//! |---|---|---|
//! | users, sessions, chat | `sqlite://` ([`sql`]) | `mysql://` ([`sql`]) |
//! | timelines | `sqlite://` ([`sqlite_timeline`]) | `mongodb://` (issue 3) |
//! | seqs, revocations, rate limits | `memory://` ([`memory`]) | `redis://` (issue 3) |
//! | bus | `memory://` ([`memory::MemoryBus`]) | `kafka://` (issue 3) |

mod lite;
pub mod memory;
pub mod sql;
mod sql_groups;
pub mod sqlite_timeline;

use feige_core::ports::Ports;
use feige_core::{Config, Error, Result};
use std::sync::Arc;

/// Everything [`connect`] built: the ports, plus the in-process bus when there is one (so the
/// process can attach its socket hub to it).
pub struct Backends {
    pub ports: Ports,
    pub memory_bus: Option<Arc<memory::MemoryBus>>,
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map(|(s, _)| s).unwrap_or("")
}

fn unsupported(var: &str, url: &str) -> Error {
    Error::bad_request("unsupported_backend", format!("{var}={url}: unsupported scheme"))
}

/// Connects every backend named in the config and runs migrations.
pub async fn connect(config: &Config) -> Result<Backends> {
    let mut probes: Vec<(&'static str, Arc<dyn feige_core::ports::Probe>)> = Vec::new();

    let db = match scheme(&config.db_url) {
        "sqlite" | "mysql" => Arc::new(sql::SqlDb::connect(&config.db_url).await?),
        _ => return Err(unsupported("FEIGE_DB_URL", &config.db_url)),
    };
    probes.push(("db", db.clone()));

    let timeline = match scheme(&config.timeline_url) {
        "sqlite" => Arc::new(sqlite_timeline::SqliteTimeline::connect(&config.timeline_url).await?),
        _ => return Err(unsupported("FEIGE_TIMELINE_URL", &config.timeline_url)),
    };
    probes.push(("timeline", timeline.clone()));

    let cache = match scheme(&config.cache_url) {
        "memory" => Arc::new(memory::MemoryCache::default()),
        _ => return Err(unsupported("FEIGE_CACHE_URL", &config.cache_url)),
    };
    probes.push(("cache", cache.clone()));

    let bus = match scheme(&config.bus_url) {
        "memory" => Arc::new(memory::MemoryBus::default()),
        _ => return Err(unsupported("FEIGE_BUS_URL", &config.bus_url)),
    };
    probes.push(("bus", bus.clone()));

    Ok(Backends {
        ports: Ports {
            users: db.clone(),
            sessions: db.clone(),
            chat: db.clone(),
            groups: db,
            timeline,
            seqs: cache.clone(),
            revocations: cache.clone(),
            limiter: cache.clone(),
            presence: cache,
            bus: bus.clone(),
            probes,
        },
        memory_bus: Some(bus),
    })
}

/// The key that signs access tokens: `FEIGE_TOKEN_SECRET`, or else a random key kept in
/// `FEIGE_DATA_DIR/token.secret` (created on first start, mode 0600), so tokens survive a
/// restart of local-runtime.
pub fn token_secret(config: &Config) -> Result<Vec<u8>> {
    if let Some(s) = &config.token_secret {
        if s.len() < 16 {
            return Err(Error::bad_request("weak_secret", "FEIGE_TOKEN_SECRET must be at least 16 bytes"));
        }
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("token.secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 16
    {
        return Ok(existing.trim().as_bytes().to_vec());
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::internal(format!("{}: {e}", config.data_dir.display())))?;
    let secret = feige_core::auth::random_token(32);
    write_private(&path, &secret).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    Ok(secret.into_bytes())
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(contents.as_bytes())
}

/// Maps a sqlx error to Feige's: connection trouble is 503, the rest 500.
pub(crate) fn sql_err(backend: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::unavailable(backend, e)
        }
        // A deadlock victim or lock timeout changed nothing (its transaction rolled back): the
        // client may retry, as after any 503.
        sqlx::Error::Database(ref d)
            if matches!(d.code().as_deref(), Some("40001") | Some("1213") | Some("1205") | Some("HY000"))
                && d.message().contains("lock") =>
        {
            Error::unavailable(backend, e)
        }
        other => Error::internal(format!("{backend}: {other}")),
    }
}

/// Whether an sqlx error is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Builds the application from a config: connects every backend, loads the token key and
/// re-seeds the revocation cache. Returns the in-process bus too, when that is the bus.
pub async fn build(config: Config) -> Result<(feige_core::Feige, Option<Arc<memory::MemoryBus>>)> {
    let backends = connect(&config).await?;
    let secret = token_secret(&config)?;
    let feige = feige_core::Feige::new(backends.ports, config, &secret);
    let restored = feige.restore_revocations().await?;
    tracing::debug!(restored, "revocations re-seeded");
    Ok((feige, backends.memory_bus))
}
