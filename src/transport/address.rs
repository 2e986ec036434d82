//! Where a peer is: `HOST[:PORT]` for `net`, `HOST[:PORT]:PATH` (scp-like) for `copy`.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::control::DEFAULT_PORT;

/// A server to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub port: u16,
}

impl Peer {
    /// `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Peer> {
        let (host, rest) = split_host(text)?;
        let port = match rest {
            None => DEFAULT_PORT,
            Some(port) => parse_port(port, text)?,
        };
        Ok(Peer { host, port })
    }

    /// `host:port` as a socket address string (brackets around IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
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
    pub fn parse(text: &str) -> Result<Location> {
        let remote_like = match (text.find(':'), text.find('/')) {
            (None, _) => false,
            (Some(colon), Some(slash)) => colon < slash || text.starts_with('['),
            (Some(_), None) => true,
        };
        if !remote_like || text.starts_with("./") || text.starts_with('/') {
            return Ok(Location::Local(PathBuf::from(text)));
        }
        let (host, rest) = split_host(text)?;
        let Some(rest) = rest else {
            bail!("'{text}': give host:path");
        };
        let (port, path) = match rest.split_once(':') {
            Some((port, path)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (parse_port(port, text)?, path)
            }
            _ => (DEFAULT_PORT, rest),
        };
        Ok(Location::Remote {
            peer: Peer { host, port },
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

/// Splits "host" or "[v6]" from what follows its colon.
fn split_host(text: &str) -> Result<(String, Option<&str>)> {
    if let Some(inner) = text.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            bail!("'{text}': an IPv6 address needs a closing ']'");
        };
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(rest) => Ok((host.to_string(), Some(rest))),
                None => bail!("'{text}': expected ':' after ']'"),
            },
        };
    }
    let (host, rest) = match text.split_once(':') {
        Some((host, rest)) => (host, Some(rest)),
        None => (text, None),
    };
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

    fn remote(host: &str, port: u16, path: &str) -> Location {
        Location::Remote {
            peer: Peer {
                host: host.into(),
                port,
            },
            path: path.into(),
        }
    }

    #[test]
    fn peers_take_an_optional_port() {
        assert_eq!(Peer::parse("lab").unwrap().port, DEFAULT_PORT);
        assert_eq!(Peer::parse("10.0.0.2:7000").unwrap().port, 7000);
        let v6 = Peer::parse("[::1]:7000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7000));
        assert_eq!(v6.authority(), "[::1]:7000");
        assert!(Peer::parse("lab:http").is_err());
        assert!(Peer::parse(":5301").is_err());
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
            remote("lab", DEFAULT_PORT, "big.bin")
        );
        assert_eq!(
            Location::parse("lab:7000:in/big.bin").unwrap(),
            remote("lab", 7000, "in/big.bin")
        );
        assert_eq!(
            Location::parse("[::1]:7000:x").unwrap(),
            remote("::1", 7000, "x")
        );
        assert_eq!(
            Location::parse("lab:").unwrap(),
            remote("lab", DEFAULT_PORT, "")
        );
    }
}
