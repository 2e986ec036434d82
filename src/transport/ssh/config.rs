//! What `~/.ssh/config` (or `-F FILE`) says about one host, read with `ssh2-config`, then
//! finished the way OpenSSH finishes it: `%` tokens expanded (ssh_config(5) TOKENS), and every
//! directive that would change where or how the connection goes either honoured or refused
//! with one line. Nothing that would send the connection elsewhere is ever silently ignored.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use ssh2_config::{HostParams, ParseRule, SshConfig};

/// The config file read and what it says about every host.
pub struct Config {
    path: PathBuf,
    config: SshConfig,
}

/// Which addresses of a name to dial (`AddressFamily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    Inet,
    Inet6,
}

/// What the config says about one host, tokens expanded; None where it says nothing.
#[derive(Debug, Clone, Default)]
pub struct HostSettings {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Unexpanded: `%r` and `%p` are known only once user and port are settled.
    pub identity_files: Option<Vec<String>>,
    pub user_known_hosts: Option<Vec<String>>,
    pub global_known_hosts: Option<Vec<String>>,
    pub revoked_host_keys: Option<String>,
    pub strict_host_key_checking: Option<String>,
    pub host_key_alias: Option<String>,
    pub identities_only: bool,
    pub family: Option<Family>,
    /// Hops, as written (`[user@]host[:port]` or `ssh://…`); empty for `none`.
    pub proxy_jump: Option<Vec<String>>,
}

/// Directives that change the route or the name of the connection and are not implemented:
/// lower-case name, name as written in ssh_config(5), and why, for the refusal.
const REFUSED: [(&str, &str, &str); 3] = [
    (
        "proxycommand",
        "ProxyCommand",
        "xferbench dials the host itself; use ProxyJump, or run xferbench where the host is reachable",
    ),
    (
        "match",
        "Match",
        "xferbench cannot evaluate Match blocks, and its reader would apply the lines under one to the Host block above it; move them under a Host line, or give -F FILE without them",
    ),
    (
        "canonicalizehostname",
        "CanonicalizeHostname",
        "xferbench does not canonicalize host names; give the full name or a HostName",
    ),
];

impl Config {
    /// `-F FILE` must exist; `~/.ssh/config` may not (then None).
    pub fn read(explicit: Option<&Path>, home: Option<&Path>) -> Result<Option<Config>> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match home {
                Some(home) => home.join(".ssh").join("config"),
                None => return Ok(None),
            },
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if explicit.is_none() && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(err) => bail!("cannot read the ssh config {}: {err}", path.display()),
        };
        let mut config = SshConfig::default();
        if let Some(home) = home {
            config = config.home_dir(home);
        }
        // Unknown and unsupported directives are kept, so the ones that matter can be refused.
        let config = config
            .parse(
                &mut BufReader::new(file),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .map_err(|err| anyhow!("{}: {err}: fix or move the file", path.display()))?;
        Ok(Some(Config { path, config }))
    }

    /// The settings for `host` (the name given), `%h`/`%%` expanded in HostName; an error for
    /// a directive that would change the route and is not implemented.
    pub fn host(&self, host: &str) -> Result<HostSettings> {
        let params = self.config.query(host);
        let others = other_directives(&params);
        let file = self.path.display();
        for (name, written, why) in REFUSED {
            let Some(args) = others.get(name) else {
                continue;
            };
            let value = args.join(" ");
            let harmless = match name {
                "proxycommand" => value.eq_ignore_ascii_case("none"),
                "canonicalizehostname" => value.eq_ignore_ascii_case("no"),
                _ => false,
            };
            if !harmless {
                bail!(
                    "{written} is not supported: {file} sets `{written} {value}` for {host}; {why}"
                );
            }
        }
        let bind = [
            ("BindAddress", &params.bind_address),
            ("BindInterface", &params.bind_interface),
        ];
        if let Some((name, Some(value))) = bind.into_iter().find(|(_, v)| v.is_some()) {
            bail!(
                "{name} is not supported: {file} sets `{name} {value}` for {host}; xferbench does not choose the local address; remove it for this host"
            );
        }
        let host_name = params
            .host_name
            .as_deref()
            .map(|name| expand_host_name(name, host))
            .transpose()?;
        let one = |name: &str| others.get(name).map(|args| args.join(" "));
        let family = match one("addressfamily").as_deref() {
            None => None,
            Some(value) => Some(match value.to_ascii_lowercase().as_str() {
                "any" => Family::Any,
                "inet" => Family::Inet,
                "inet6" => Family::Inet6,
                other => bail!("{file}: AddressFamily {other}: give any, inet or inet6"),
            }),
        };
        let proxy_jump = params.proxy_jump.clone().map(|hops| {
            if hops.len() == 1 && hops[0].eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                hops
            }
        });
        Ok(HostSettings {
            host_name,
            user: params.user.clone(),
            port: params.port,
            identity_files: params.identity_file.as_ref().map(|files| {
                files
                    .iter()
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect()
            }),
            user_known_hosts: others.get("userknownhostsfile").cloned(),
            global_known_hosts: others.get("globalknownhostsfile").cloned(),
            revoked_host_keys: one("revokedhostkeys"),
            strict_host_key_checking: one("stricthostkeychecking"),
            host_key_alias: one("hostkeyalias"),
            identities_only: one("identitiesonly").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            family,
            proxy_jump,
        })
    }
}

/// The directives ssh2-config keeps aside (unknown or unsupported by it), by lower-case name.
fn other_directives(params: &HostParams) -> HashMap<String, Vec<String>> {
    let mut others = HashMap::new();
    for (name, args) in params
        .unsupported_fields
        .iter()
        .chain(&params.ignored_fields)
    {
        others
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| args.clone());
    }
    others
}

/// The values `%` tokens stand for (ssh_config(5) TOKENS); None for one not known here.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// %d
    pub home: Option<String>,
    /// %h: the host name after HostName.
    pub host: String,
    /// %n: the name as given.
    pub original: String,
    /// %k: HostKeyAlias, else the name as given.
    pub alias: String,
    /// %p
    pub port: Option<u16>,
    /// %r
    pub remote_user: Option<String>,
    /// %u
    pub local_user: Option<String>,
    /// %j: the ProxyJump hops as written.
    pub jump: String,
}

impl Tokens {
    fn value(&self, token: char) -> Option<String> {
        let local_host = || crate::sys::host::hostname().ok();
        match token {
            '%' => Some("%".into()),
            'd' => self.home.clone(),
            'h' => Some(self.host.clone()),
            'n' => Some(self.original.clone()),
            'k' => Some(self.alias.clone()),
            'p' => self.port.map(|p| p.to_string()),
            'r' => self.remote_user.clone(),
            'u' => self.local_user.clone(),
            'j' => Some(self.jump.clone()),
            'i' => Some(crate::sys::host::uid().to_string()),
            'l' => local_host(),
            'L' => local_host().map(|h| h.split('.').next().unwrap_or_default().to_string()),
            'C' => {
                use sha1::Digest;
                let text = format!(
                    "{}{}{}{}{}",
                    local_host()?,
                    self.host,
                    self.port?,
                    self.remote_user.clone()?,
                    self.jump
                );
                let digest = sha1::Sha1::digest(text.as_bytes());
                Some(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
            _ => None,
        }
    }
}

/// Expands the `%` tokens of `text`, a value of `directive`, allowing only `allowed` (as
/// ssh_config(5) lists them per directive): `%%` is a `%`; an unknown or not-allowed token
/// is an error naming it.
pub fn expand(text: &str, directive: &str, allowed: &str, tokens: &Tokens) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let token = chars.next().ok_or_else(|| {
            anyhow!("{directive} {text}: a lone '%' at the end: write %% for a percent sign")
        })?;
        let value = allowed
            .contains(token)
            .then(|| tokens.value(token))
            .flatten()
            .ok_or_else(|| {
                anyhow!("{directive} {text}: %{token} is not a token {directive} takes here: write %% for a percent sign")
            })?;
        out.push_str(&value);
    }
    Ok(out)
}

/// Tokens IdentityFile, UserKnownHostsFile and RevokedHostKeys take.
pub const FILE_TOKENS: &str = "%CdhikLlnpru";
/// Tokens User takes (a newer OpenSSH's list).
pub const USER_TOKENS: &str = "%CdhikLlnpu";
/// Tokens ProxyJump takes.
pub const JUMP_TOKENS: &str = "%hnpr";

/// HostName takes `%h` (the name given) and `%%`.
fn expand_host_name(text: &str, given: &str) -> Result<String> {
    let tokens = Tokens {
        host: given.to_string(),
        ..Tokens::default()
    };
    expand(text, "HostName", "%h", &tokens)
}

/// A path from the config: `~` and `~/…` are the home directory, like OpenSSH's tilde_expand.
pub fn tilde(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let config = SshConfig::default()
            .home_dir("/home/ann")
            .parse(
                &mut text.as_bytes(),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .unwrap();
        Config {
            path: PathBuf::from("cfg"),
            config,
        }
    }

    fn tokens() -> Tokens {
        Tokens {
            home: Some("/home/ann".into()),
            host: "nas.lab".into(),
            original: "nas".into(),
            alias: "nas".into(),
            port: Some(2222),
            remote_user: Some("bob".into()),
            local_user: Some("ann".into()),
            jump: String::new(),
        }
    }

    #[test]
    fn tokens_expand_as_openssh_expands_them() {
        let t = tokens();
        assert_eq!(
            expand("%d/.ssh/id_%r@%h:%p", "IdentityFile", FILE_TOKENS, &t).unwrap(),
            "/home/ann/.ssh/id_bob@nas.lab:2222"
        );
        assert_eq!(
            expand("100%%-%n-%u", "User", USER_TOKENS, &t).unwrap(),
            "100%-nas-ann"
        );
        assert_eq!(expand_host_name("%h.lab", "nas").unwrap(), "nas.lab");
        assert_eq!(
            expand("%C", "IdentityFile", FILE_TOKENS, &t).unwrap().len(),
            40
        );
    }

    #[test]
    fn unknown_and_misplaced_tokens_are_refused_by_name() {
        let t = tokens();
        let err = expand("%x", "IdentityFile", FILE_TOKENS, &t).unwrap_err();
        assert!(err.to_string().contains("%x is not a token"), "{err}");
        assert!(expand_host_name("%p.lab", "nas").is_err());
        assert!(expand("%r", "User", USER_TOKENS, &t).is_err());
        assert!(expand("50%", "User", USER_TOKENS, &t).is_err());
    }

    #[test]
    fn host_name_tokens_are_expanded_with_the_name_given() {
        let config = config("Host *.lab\n  HostName %h.example\n");
        assert_eq!(
            config.host("nas.lab").unwrap().host_name.as_deref(),
            Some("nas.lab.example")
        );
    }

    #[test]
    fn directives_that_change_the_route_are_refused_by_name() {
        for (line, name) in [
            ("ProxyCommand nc %h %p", "ProxyCommand is not supported"),
            ("BindAddress 10.0.0.1", "BindAddress is not supported"),
            ("BindInterface eth1", "BindInterface is not supported"),
            (
                "CanonicalizeHostname yes",
                "CanonicalizeHostname is not supported",
            ),
        ] {
            let config = config(&format!("Host nas\n  {line}\n"));
            let err = config.host("nas").unwrap_err().to_string();
            assert!(err.starts_with(name), "{line}: {err}");
            assert!(config.host("lab").is_ok(), "{line} reached another host");
        }
        let config = config("Host nas\n  User ann\nMatch exec \"true\"\n  ProxyJump gw\n");
        let err = config.host("nas").unwrap_err().to_string();
        assert!(err.starts_with("Match is not supported"), "{err}");
    }

    #[test]
    fn harmless_values_of_route_directives_pass() {
        let config = config(
            "Host nas\n  ProxyCommand none\n  CanonicalizeHostname no\n  ProxyJump none\n  ControlMaster auto\n  ControlPath ~/.ssh/cm-%C\n",
        );
        let settings = config.host("nas").unwrap();
        assert_eq!(settings.proxy_jump, Some(Vec::new()));
    }

    #[test]
    fn known_hosts_alias_and_family_are_read() {
        let config = config(
            "Host nas\n  UserKnownHostsFile ~/.ssh/kh_%h /etc/kh2\n  HostKeyAlias nas-key\n  AddressFamily inet6\n  StrictHostKeyChecking accept-new\n  IdentitiesOnly yes\n  ProxyJump gw,ann@gw2:2222\n",
        );
        let settings = config.host("nas").unwrap();
        assert_eq!(
            settings.user_known_hosts.unwrap(),
            ["~/.ssh/kh_%h", "/etc/kh2"]
        );
        assert_eq!(settings.host_key_alias.as_deref(), Some("nas-key"));
        assert_eq!(settings.family, Some(Family::Inet6));
        assert_eq!(
            settings.strict_host_key_checking.as_deref(),
            Some("accept-new")
        );
        assert!(settings.identities_only);
        assert_eq!(settings.proxy_jump.unwrap(), ["gw", "ann@gw2:2222"]);
        assert_eq!(
            tilde("~/.ssh/x", Some(Path::new("/home/ann"))),
            Path::new("/home/ann/.ssh/x")
        );
    }
}
