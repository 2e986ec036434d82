//! Where a peer is: `[USER@]HOST[:PORT]` for `net`, `[USER@]HOST[:PORT]:PATH` (scp-like) for
//! `copy`. The port is left unset when not given: each path has its own default.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::control::DEFAULT_PORT;

/// A server to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Only the SSH path logs in as someone.
    pub user: Option<String>,
    pub host: String,
    /// None: the path's default (5301 for `serve`, 22 or ~/.ssh/config for SSH).
    pub port: Option<u16>,
}

impl Peer {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare `v6` address, each with an optional
    /// `user@`; a scope may name an interface (`[fe80::1%eth0]`). A bare address that could end
    /// in a port (`::1:5301`) is refused: write IPv6 addresses in brackets.
    pub fn parse(text: &str) -> Result<Peer> {
        let (user, rest) = split_user(text)?;
        if let Some(host) = bare_ipv6(rest, text)? {
            return Ok(Peer {
                user,
                host,
                port: None,
            });
        }
        let (host, port) = split_host(rest)?;
        let port = port.map(|port| parse_port(port, text)).transpose()?;
        Ok(Peer { user, host, port })
    }

    /// The port to dial when `serve`'s control port is meant.
    pub fn serve_port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// `host:port` as a socket address string (brackets around IPv6), with `port` if none was given.
    pub fn authority_or(&self, port: u16) -> String {
        let port = self.port.unwrap_or(port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// `host:port` of `serve`'s control port.
    pub fn authority(&self) -> String {
        self.authority_or(DEFAULT_PORT)
    }

    /// Refuses a `user@` on a path that has no login.
    pub fn without_user(&self, path: &str) -> Result<()> {
        match &self.user {
            Some(user) => bail!(
                "'{user}@{}': a user name only means something with --via ssh, not --via {path}",
                self.host
            ),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match self.port {
            Some(_) => f.write_str(&self.authority()),
            None if self.host.contains(':') => write!(f, "[{}]", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// A path relative to the server's root.
    Remote {
        peer: Peer,
        path: String,
    },
}

impl Location {
    /// Like scp: `host:path`, `host:port:path`, `[v6]:path`; anything without a colon, or with
    /// a slash before the first colon, is a local path.
    ///
    /// A text that fails to parse as `host:path` while a local file of that name exists gets
    /// scp's advice: write it as `./NAME`.
    pub fn parse(text: &str) -> Result<Location> {
        Location::parse_scp_like(text).map_err(|err| {
            if Path::new(text).exists() {
                anyhow!("{err}; the local file '{text}' exists: write it as ./{text}")
            } else {
                err
            }
        })
    }

    fn parse_scp_like(text: &str) -> Result<Location> {
        let remote_like = match (text.find(':'), text.find('/')) {
            (None, _) => false,
            (Some(colon), Some(slash)) => colon < slash || text.starts_with('['),
            (Some(_), None) => true,
        };
        if !remote_like || text.starts_with("./") || text.starts_with('/') {
            return Ok(Location::Local(PathBuf::from(text)));
        }
        let (user, after_user) = split_user(text)?;
        let (host, rest) = split_host(after_user)?;
        let Some(rest) = rest else {
            bail!("'{text}': give host:path");
        };
        let (port, path) = match rest.split_once(':') {
            Some((port, path)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(parse_port(port, text)?), path)
            }
            _ => (None, rest),
        };
        Ok(Location::Remote {
            peer: Peer { user, host, port },
            path: path.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Remote { peer, path } => write!(f, "{peer}:{path}"),
        }
    }
}

/// scp's advice for a local file whose name reads as `host:path` (`2024-01-01T10:00.bin`): when
/// a remote end's text names an existing local file and its host does not resolve, the line
/// that says to write it as `./NAME`; None otherwise.
pub fn local_twin_hint(ends: [&Location; 2]) -> Option<String> {
    use std::net::ToSocketAddrs;
    ends.into_iter().find_map(|end| {
        let Location::Remote { peer, path } = end else {
            return None;
        };
        let text = end.to_string();
        let resolves = (peer.host.as_str(), 22).to_socket_addrs().is_ok();
        (!resolves && Path::new(&text).exists()).then(|| {
            format!(
                "'{text}' reads as host '{}' and path '{path}' (a ':' before any '/'), and that host \
                 does not resolve; for the local file '{text}', write ./{text}",
                peer.host
            )
        })
    })
}

/// `dir/` or an empty path takes the source's file name, like cp and scp.
pub fn with_file_name(remote_path: &str, source: &Path) -> String {
    if remote_path.is_empty() || remote_path.ends_with('/') {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{remote_path}{name}")
    } else {
        remote_path.to_string()
    }
}

/// A download into a directory keeps the remote file's name, like cp and scp.
pub fn local_destination(destination: &Path, remote_path: &str) -> Result<PathBuf> {
    if !destination.is_dir() {
        return Ok(destination.to_path_buf());
    }
    match Path::new(remote_path).file_name() {
        Some(name) => Ok(destination.join(name)),
        None => bail!("'{remote_path}' does not name a file"),
    }
}

/// Splits an optional "user@" from the rest (an '@' before any ':' or '/').
fn split_user(text: &str) -> Result<(Option<String>, &str)> {
    let end = text.find([':', '/', '[']).unwrap_or(text.len());
    match text[..end].rfind('@') {
        Some(0) => bail!("'{text}': the user name before '@' is empty"),
        Some(at) => Ok((Some(text[..at].to_string()), &text[at + 1..])),
        None => Ok((None, text)),
    }
}

/// An IPv6 address written without brackets (two colons or more): Some(address, its scope a
/// number); None for anything else; an error when the last group could be a port, or when it
/// is no address at all.
fn bare_ipv6(text: &str, whole: &str) -> Result<Option<String>> {
    if text.starts_with('[') || text.matches(':').count() < 2 {
        return Ok(None);
    }
    if !is_ipv6(text) {
        bail!(
            "'{whole}': not an IPv6 address, and more than one ':' for host:port: write IPv6 addresses in [brackets], e.g. [::1]:5301"
        );
    }
    if let Some((address, last)) = text.rsplit_once(':')
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && is_ipv6(address)
    {
        bail!(
            "'{whole}': ambiguous: write IPv6 addresses in [brackets]: [{address}]:{last} for port {last}, [{text}] for the address"
        );
    }
    Ok(Some(numeric_scope(text, whole)?))
}

/// Whether `text` is an IPv6 address, with or without a `%scope`.
fn is_ipv6(text: &str) -> bool {
    let address = text.split_once('%').map_or(text, |(address, _)| address);
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `addr%eth0` as `addr%2`: the resolver and the socket address parser take only a number.
fn numeric_scope(host: &str, whole: &str) -> Result<String> {
    let Some((address, scope)) = host.split_once('%') else {
        return Ok(host.to_string());
    };
    if scope.bytes().all(|b| b.is_ascii_digit()) && !scope.is_empty() {
        return Ok(host.to_string());
    }
    let Some(index) = crate::sys::net::interface_index(scope) else {
        bail!("'{whole}': no network interface named '{scope}' here (`ip link` lists them)");
    };
    Ok(format!("{address}%{index}"))
}

/// Splits "host" or "[v6]" from what follows its colon.
fn split_host(text: &str) -> Result<(String, Option<&str>)> {
    if let Some(inner) = text.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            bail!("'{text}': an IPv6 address needs a closing ']'");
        };
        let host = numeric_scope(host, text)?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(rest) => Ok((host, Some(rest))),
                None => bail!("'{text}': expected ':' after ']'"),
            },
        };
    }
    let (host, rest) = match text.split_once(':') {
        Some((host, rest)) => (host, Some(rest)),
        None => (text, None),
    };
    if host.is_empty() && text.starts_with("::") {
        bail!("'{text}': write IPv6 addresses in [brackets], e.g. [::1]:path");
    }
    if host.is_empty() {
        bail!("'{text}': the host name is empty");
    }
    Ok((host.to_string(), rest))
}

fn parse_port(port: &str, text: &str) -> Result<u16> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bail!("'{text}': '{port}' is not a port number (1-65535)"),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(host: &str, port: Option<u16>, path: &str) -> Location {
        Location::Remote {
            peer: Peer {
                user: None,
                host: host.into(),
                port,
            },
            path: path.into(),
        }
    }

    #[test]
    fn peers_take_an_optional_port() {
        assert_eq!(Peer::parse("lab").unwrap().port, None);
        assert_eq!(Peer::parse("lab").unwrap().authority(), "lab:5301");
        assert_eq!(Peer::parse("10.0.0.2:7000").unwrap().port, Some(7000));
        let v6 = Peer::parse("[::1]:7000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(7000)));
        assert_eq!(v6.authority(), "[::1]:7000");
        assert!(Peer::parse("lab:http").is_err());
        assert!(Peer::parse(":5301").is_err());
    }

    #[test]
    fn peers_take_an_optional_user() {
        let peer = Peer::parse("ann@nas:2222").unwrap();
        assert_eq!(
            (peer.user.as_deref(), peer.host.as_str(), peer.port),
            (Some("ann"), "nas", Some(2222))
        );
        assert_eq!(peer.to_string(), "ann@nas:2222");
        assert_eq!(Peer::parse("ann@[::1]").unwrap().host, "::1");
        assert!(Peer::parse("@nas").is_err());
        assert!(Peer::parse("ann@nas").unwrap().without_user("tcp").is_err());
        let Location::Remote { peer, path } = Location::parse("ann@nas:in/a@b").unwrap() else {
            panic!("remote expected")
        };
        assert_eq!(
            (peer.user.as_deref(), path.as_str()),
            (Some("ann"), "in/a@b")
        );
    }

    #[test]
    fn bare_ipv6_addresses_are_hosts_and_ambiguous_ones_ask_for_brackets() {
        for (text, host) in [("::1", "::1"), ("fe80::1", "fe80::1"), ("ann@::1", "::1")] {
            let peer = Peer::parse(text).unwrap();
            assert_eq!((peer.host.as_str(), peer.port), (host, None), "{text}");
        }
        assert_eq!(Peer::parse("::1").unwrap().authority(), "[::1]:5301");
        for text in ["::1:5301", "2001:db8::1:22"] {
            let err = Peer::parse(text).unwrap_err().to_string();
            assert!(err.contains("[brackets]"), "{text}: {err}");
        }
        let err = Peer::parse("a:b:c").unwrap_err().to_string();
        assert!(err.contains("[brackets]"), "{err}");
        let err = Location::parse("::1:x").unwrap_err().to_string();
        assert!(err.contains("[brackets]"), "{err}");
    }

    #[test]
    fn a_scope_may_name_an_interface() {
        let peer = Peer::parse("[fe80::1%lo]:5301").unwrap();
        assert_eq!(peer.host, "fe80::1%1");
        assert_eq!(Peer::parse("fe80::1%lo").unwrap().host, "fe80::1%1");
        assert_eq!(Peer::parse("[fe80::1%3]").unwrap().host, "fe80::1%3");
        let err = Peer::parse("[fe80::1%nosuchif9]:5301")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no network interface named 'nosuchif9'"),
            "{err}"
        );
    }

    #[test]
    fn locations_read_like_scp() {
        assert_eq!(
            Location::parse("big.bin").unwrap(),
            Location::Local("big.bin".into())
        );
        assert_eq!(
            Location::parse("./a:b").unwrap(),
            Location::Local("./a:b".into())
        );
        assert_eq!(
            Location::parse("dir/a:b").unwrap(),
            Location::Local("dir/a:b".into())
        );
        assert_eq!(
            Location::parse("lab:big.bin").unwrap(),
            remote("lab", None, "big.bin")
        );
        assert_eq!(
            Location::parse("lab:7000:in/big.bin").unwrap(),
            remote("lab", Some(7000), "in/big.bin")
        );
        assert_eq!(
            Location::parse("[::1]:7000:x").unwrap(),
            remote("::1", Some(7000), "x")
        );
        assert_eq!(Location::parse("lab:").unwrap(), remote("lab", None, ""));
    }
}
