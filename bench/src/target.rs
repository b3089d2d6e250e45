//! The server a load tool aims at, from a `ws://host:port/path` URL.
//!
//! Only plain `ws://` is supported: tern has no TLS, so a `wss://` URL is
//! refused with a message saying so rather than sent in the clear.
//!
//! A host name may resolve to several addresses (`localhost` to
//! `127.0.0.1` and `::1`, say) while the server listens on only one. Every
//! connection of a run goes to one address, so when there are several,
//! each is tried in the resolver's order with a plain TCP connect (closed
//! at once, without a handshake) and the first that accepts is used; when
//! none does, the first is used and the run reports why it fails.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the probe of one resolved address may take.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// A parsed and resolved WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The address connections go to: the first the host resolved to
    /// that accepted a TCP connection.
    pub addr: SocketAddr,
    /// Value of the `Host` header: the URL's authority as written.
    pub host: String,
    /// Request target: the URL's path and query, `/` if empty.
    pub path: String,
}

/// Why a URL cannot be used.
#[derive(Debug)]
pub enum TargetError {
    /// The URL uses `wss://`, which needs TLS.
    Tls,
    /// The URL does not start with `ws://`.
    Scheme,
    /// The URL has no host.
    MissingHost,
    /// The port is not a number from 1 to 65535.
    BadPort(String),
    /// The URL carries user credentials (`user@host`), which tern never
    /// sends.
    Credentials,
    /// The host name could not be resolved.
    Resolve(String, std::io::Error),
    /// The host name resolved to no address.
    NoAddress(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Tls => {
                f.write_str("wss:// needs TLS, which tern does not support; use ws://")
            }
            TargetError::Scheme => f.write_str("url must start with ws://"),
            TargetError::MissingHost => f.write_str("url has no host"),
            TargetError::BadPort(p) => write!(f, "port {p:?} is not a number from 1 to 65535"),
            TargetError::Credentials => f.write_str("url carries credentials (user@host)"),
            TargetError::Resolve(host, e) => write!(f, "cannot resolve {host:?}: {e}"),
            TargetError::NoAddress(host) => write!(f, "{host:?} resolved to no address"),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `url` and resolves its host.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("wss://") {
            return Err(TargetError::Tls);
        }
        if !lower.starts_with("ws://") {
            return Err(TargetError::Scheme);
        }
        let rest = &url["ws://".len()..];
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.contains('@') {
            return Err(TargetError::Credentials);
        }

        let (host, port) = split_authority(authority)?;
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve(host.to_string(), e))?
            .collect();
        let addr =
            choose(&addrs, PROBE_WAIT).ok_or_else(|| TargetError::NoAddress(host.to_string()))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path,
        })
    }

    /// Whether the target is an IPv4 loopback address (`127.0.0.0/8`),
    /// where connections may be spread over several source addresses.
    pub fn is_loopback_v4(&self) -> bool {
        matches!(self.addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
    }
}

/// The first of `addrs` that accepts a TCP connection within `wait`, or
/// the first of them when none does; `None` when `addrs` is empty. A
/// single address is returned without a probe.
fn choose(addrs: &[SocketAddr], wait: Duration) -> Option<SocketAddr> {
    let first = *addrs.first()?;
    if addrs.len() == 1 {
        return Some(first);
    }
    let reachable = addrs
        .iter()
        .find(|addr| TcpStream::connect_timeout(addr, wait).is_ok());
    Some(reachable.copied().unwrap_or(first))
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]` (port 80).
fn split_authority(authority: &str) -> Result<(&str, u16), TargetError> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err(TargetError::MissingHost);
        };
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(TargetError::BadPort(after.to_string())),
        };
        (&inner[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(TargetError::MissingHost);
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(TargetError::BadPort(p.to_string())),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_loopback_url() {
        let t = Target::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:9001");
        assert_eq!(t.path, "/");
        assert!(t.is_loopback_v4());
    }

    #[test]
    fn path_query_and_ipv6() {
        let t = Target::parse("ws://[::1]:9002/chat?room=1").unwrap();
        assert_eq!(t.addr, "[::1]:9002".parse().unwrap());
        assert_eq!(t.path, "/chat?room=1");
        assert!(!t.is_loopback_v4());

        let t = Target::parse("ws://127.0.0.3?x=1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path, "/?x=1");
    }

    #[test]
    fn localhost_resolves() {
        let t = Target::parse("ws://localhost:9001/").unwrap();
        assert!(t.addr.ip().is_loopback());
    }

    #[test]
    fn the_first_address_that_accepts_is_chosen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // A port just freed, so nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let wait = Duration::from_secs(1);
        assert_eq!(choose(&[closed, open], wait), Some(open));
        assert_eq!(choose(&[open, closed], wait), Some(open));
        assert_eq!(choose(&[closed], wait), Some(closed));
        assert_eq!(choose(&[closed, closed], wait), Some(closed));
        assert_eq!(choose(&[], wait), None);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            Target::parse("wss://127.0.0.1:1"),
            Err(TargetError::Tls)
        ));
        assert!(matches!(
            Target::parse("http://127.0.0.1"),
            Err(TargetError::Scheme)
        ));
        assert!(matches!(
            Target::parse("ws://:80"),
            Err(TargetError::MissingHost)
        ));
        assert!(matches!(
            Target::parse("ws://127.0.0.1:0"),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            Target::parse("ws://127.0.0.1:99999"),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            Target::parse("ws://[::1"),
            Err(TargetError::MissingHost)
        ));
        assert!(matches!(
            Target::parse("ws://u:p@127.0.0.1"),
            Err(TargetError::Credentials)
        ));
        let tls = Target::parse("WSS://x").unwrap_err().to_string();
        assert!(tls.contains("TLS"), "{tls}");
    }
}
