//! Where the load goes (loopback only) and where it comes from (several loopback source
//! addresses, a raised open-file limit).

use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The server under test.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The address connections go to.
    pub addr: SocketAddr,
    /// `http://ip:port` (no trailing slash): HTTP requests.
    pub http_base: String,
    /// `ws://host:port`: the push socket (the host as given, for the Host header).
    pub ws_base: String,
    /// `POST /v1/messages`, parsed once (a `&str` would be parsed again on every send).
    pub send_url: reqwest::Url,
}

/// Accepts only `http://` URLs whose host is `localhost` or in 127.0.0.0/8.
pub(crate) fn loopback(url: &str) -> anyhow::Result<Target> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    if parsed.scheme() != "http" {
        bail!("--url {url:?}: only http:// is supported (the load generator targets a local server)");
    }
    let host = parsed.host_str().unwrap_or_default();
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        match host.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => ip,
            _ => bail!("refusing to load {host:?}: the target must be a loopback address (127.x.y.z or localhost)"),
        }
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
    let http_base = format!("http://{addr}");
    let send_url = reqwest::Url::parse(&format!("{http_base}/v1/messages")).context("the send URL")?;
    Ok(Target { addr, http_base, ws_base: format!("ws://{host}:{port}"), send_url })
}

/// Client source addresses: `n` of them, or one per 20,000 sockets when `n` is 0.
pub(crate) fn sources(n: usize, sockets: usize) -> Vec<Ipv4Addr> {
    let n = if n == 0 { sockets.div_ceil(20_000) } else { n };
    (0..n.clamp(1, 250)).map(|i| Ipv4Addr::new(127, 0, 0, 1 + i as u8)).collect()
}

/// Raises the open-file limit as far as allowed: the hard limit to `fs.nr_open` when we may
/// (root), then the soft limit to the hard one. Returns the soft limit in force.
pub(crate) fn raise_nofile() -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(nr_open), Ok((_, hard))) = (nr_open, rlimit::getrlimit(rlimit::Resource::NOFILE))
        && hard < nr_open
    {
        // Only works with CAP_SYS_RESOURCE; otherwise the hard limit stays.
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, nr_open, nr_open);
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let t = loopback("http://127.0.0.1:8080").expect("loopback");
        assert_eq!(t.http_base, "http://127.0.0.1:8080");
        assert_eq!(t.ws_base, "ws://127.0.0.1:8080");
        let t = loopback("http://localhost:9000/").expect("localhost");
        assert_eq!(t.addr, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(t.ws_base, "ws://localhost:9000");
        assert!(loopback("http://127.3.2.1").is_ok());
        for bad in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2",
            "http://example.com",
            "http://8.8.8.8",
            "https://127.0.0.1",
            "http://[::1]:8080",
            "http://localhost.example.com",
            "not a url",
        ] {
            assert!(loopback(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn source_addresses() {
        assert_eq!(sources(0, 10), vec![Ipv4Addr::new(127, 0, 0, 1)]);
        assert_eq!(sources(0, 50_000).len(), 3);
        assert_eq!(sources(4, 10)[3], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(sources(1000, 10).len(), 250);
    }
}
