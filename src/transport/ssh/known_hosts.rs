//! known_hosts read the way OpenSSH reads it: comma lists of host patterns with `*`, `?` and
//! `!` negation, `[host]:port` names, hashed names (`|1|salt|hash`, HMAC-SHA1), `@revoked` and
//! `@cert-authority` markers, comments and blank lines; several files (the user's, then the
//! global ones), each line remembered with its file and number for the messages.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{self, Algorithm, PublicKey};
use sha1::Sha1;

/// What a line says about the hosts it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A plain line: this host's key.
    Key,
    /// `@revoked`: this key must never be accepted.
    Revoked,
    /// `@cert-authority`: host certificates signed by this key are trusted.
    CertAuthority,
}

/// One key line of a known_hosts file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    /// 1-based, as editors and `ssh-keygen -R` count.
    pub line: usize,
    pub marker: Marker,
    /// The host field as written: patterns, or one hashed name.
    hosts: String,
    pub key: PublicKey,
}

impl Entry {
    /// `FILE:LINE`, as messages point at it.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// What the known_hosts files say about the key a host offers.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A plain line for this host holds this key.
    Known,
    /// A `@revoked` line covering this host holds this key.
    Revoked(Entry),
    /// A `@cert-authority` line covers this host: its certificates cannot be checked here.
    CertAuthority(Entry),
    /// The host has a line with another key of the same algorithm.
    Changed(Entry),
    /// The host is known, but only by keys of other algorithms than the one offered.
    OtherAlgorithms(Vec<Entry>),
    /// No line names this host.
    Unknown,
}

/// The key lines of every file read, in order (user files first, then global ones).
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads `files` in order; a missing file is empty, an unreadable one an error naming it.
    pub fn load(files: &[PathBuf]) -> Result<KnownHosts> {
        let mut known = KnownHosts::default();
        for file in files {
            match std::fs::read(file) {
                Ok(bytes) => known.add(file, &String::from_utf8_lossy(&bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(anyhow!("cannot read {}: {err}", file.display())),
            }
        }
        Ok(known)
    }

    /// Adds the lines of one file; lines OpenSSH would skip (bad keys, unknown markers) are
    /// skipped too.
    pub fn add(&mut self, file: &Path, text: &str) {
        for (index, line) in text.lines().enumerate() {
            if let Some((marker, hosts, key)) = parse_line(line) {
                self.entries.push(Entry {
                    file: file.to_path_buf(),
                    line: index + 1,
                    marker,
                    hosts: hosts.to_string(),
                    key,
                });
            }
        }
    }

    /// The lines covering `name` (`host`, or `[host]:port` off port 22).
    fn covering<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = name.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |entry| hosts_match(&entry.hosts, &name))
    }

    /// The algorithms of the plain keys pinned for `name`, in file order: offered first, as
    /// OpenSSH does, so a host known by its ecdsa key is not asked for its ed25519 one.
    pub fn pinned_algorithms(&self, name: &str) -> Vec<Algorithm> {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for entry in self.covering(name).filter(|e| e.marker == Marker::Key) {
            for algorithm in host_key_algorithms(&entry.key.algorithm()) {
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }

    /// What the files say about `key` offered by `name`: a revocation first, then a match, then
    /// an authority we cannot honour, then a changed key.
    pub fn check(&self, name: &str, key: &PublicKey) -> Verdict {
        let covering: Vec<&Entry> = self.covering(name).collect();
        let same = |entry: &&&Entry| entry.key.key_data() == key.key_data();
        if let Some(revoked) = covering
            .iter()
            .filter(|e| e.marker == Marker::Revoked)
            .find(same)
        {
            return Verdict::Revoked((*revoked).clone());
        }
        let plain: Vec<&Entry> = covering
            .iter()
            .copied()
            .filter(|e| e.marker == Marker::Key)
            .collect();
        if plain.iter().any(|e| e.key.key_data() == key.key_data()) {
            return Verdict::Known;
        }
        if let Some(authority) = covering.iter().find(|e| e.marker == Marker::CertAuthority) {
            return Verdict::CertAuthority((*authority).clone());
        }
        if let Some(changed) = plain.iter().find(|e| e.key.algorithm() == key.algorithm()) {
            return Verdict::Changed((*changed).clone());
        }
        if !plain.is_empty() {
            return Verdict::OtherAlgorithms(plain.into_iter().cloned().collect());
        }
        Verdict::Unknown
    }
}

/// `name ALGORITHM BASE64`, the line that pins `key` for `name`.
pub fn line_for(name: &str, key: &PublicKey) -> Result<String> {
    let mut key = key.clone();
    key.set_comment("");
    let text = key
        .to_openssh()
        .map_err(|err| anyhow!("cannot write the host key: {err}"))?;
    Ok(format!("{name} {}", text.trim_end()))
}

/// Appends the line for `key` to `file` (made, with its directory, if missing), after a
/// newline if the file does not end with one.
pub fn record(file: &Path, name: &str, key: &PublicKey) -> Result<()> {
    let line = line_for(name, key)?;
    let write = || -> std::io::Result<()> {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut handle = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(file)?;
        let mut last = [0u8; 1];
        let needs_newline = handle.seek(SeekFrom::End(-1)).is_ok()
            && handle.read_exact(&mut last).is_ok()
            && last[0] != b'\n';
        let text = format!("{}{line}\n", if needs_newline { "\n" } else { "" });
        handle.write_all(text.as_bytes())
    };
    write().with_context(|| format!("cannot record the host key in {}", file.display()))
}

/// The line of `file` (RevokedHostKeys: one public key a line, `ALGORITHM BASE64 [comment]`)
/// that holds `key`; a binary KRL is refused, not misread.
pub fn revoked_in(file: &Path, key: &PublicKey) -> Result<Option<usize>> {
    let bytes = std::fs::read(file)
        .map_err(|err| anyhow!("cannot read RevokedHostKeys {}: {err}", file.display()))?;
    if bytes.starts_with(b"SSHKRL") {
        return Err(anyhow!(
            "RevokedHostKeys {} is a KRL, which xferbench cannot read: list the revoked keys one a line instead",
            file.display()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .position(|line| {
            let mut fields = line.split_whitespace();
            matches!((fields.next(), fields.next()), (Some(_), Some(blob))
            if keys::parse_public_key_base64(blob).is_ok_and(|k| k.key_data() == key.key_data()))
        })
        .map(|index| index + 1))
}

/// Splits a line into marker, hosts and key; None for comments, blank and unusable lines.
fn parse_line(line: &str) -> Option<(Marker, &str, PublicKey)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        marker if marker.starts_with('@') => return None,
        _ => Marker::Key,
    };
    if marker != Marker::Key {
        first = fields.next()?;
    }
    let (_algorithm, blob) = (fields.next()?, fields.next()?);
    let key = keys::parse_public_key_base64(blob).ok()?;
    Some((marker, first, key))
}

/// OpenSSH's match_hostname: a hashed name, or a comma list where a matching `!pattern`
/// excludes the line whatever else matches. `name` is lower case.
fn hosts_match(hosts: &str, name: &str) -> bool {
    if let Some(hashed) = hosts.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in hosts.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if wildcard_match(&pattern.to_ascii_lowercase(), name) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` any run of characters, `?` one character, as OpenSSH's match_pattern.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The host key algorithms that yield a key of this kind: an RSA key signs with SHA-2 first.
fn host_key_algorithms(kind: &Algorithm) -> Vec<Algorithm> {
    match kind {
        Algorithm::Rsa { .. } => vec![
            Algorithm::Rsa {
                hash: Some(keys::HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(keys::HashAlg::Sha256),
            },
            Algorithm::Rsa { hash: None },
        ],
        other => vec![other.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED25519_OTHER: &str =
        "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMNyvkB/KOlUkwJ2vj1UGwurSCC7pKZib8Et/pYhZMfOOJa1/EpuJhM508DQpTaHkd2oh74QG3iZsBckxwNsM+o=";

    fn key(blob: &str) -> PublicKey {
        keys::parse_public_key_base64(blob).unwrap()
    }

    /// Asserts what `known` says of the ED25519 test key under `name`.
    macro_rules! assert_check {
        ($known:expr, $name:expr, $verdict:pat) => {
            assert!(
                matches!($known.check($name, &key(ED25519)), $verdict),
                "{}",
                $name
            )
        };
    }

    fn known(text: &str) -> KnownHosts {
        let mut known = KnownHosts::default();
        known.add(Path::new("kh"), text);
        known
    }

    #[test]
    fn comma_lists_brackets_and_case_match_like_openssh() {
        let known = known(&format!(
            "# a comment\n\nnas,10.0.0.2 ssh-ed25519 {ED25519}\n[Lab]:2222 ssh-ed25519 {ED25519}\n"
        ));
        for name in ["nas", "NAS", "10.0.0.2", "[lab]:2222"] {
            assert_check!(known, name, Verdict::Known);
        }
        for name in ["lab", "[nas]:2222", "10.0.0.20"] {
            assert_check!(known, name, Verdict::Unknown);
        }
    }

    #[test]
    fn wildcards_match_and_a_negation_excludes_the_line() {
        let known = known(&format!("*.lab,!bad.lab,host-? ssh-ed25519 {ED25519}\n"));
        assert_check!(known, "a.lab", Verdict::Known);
        assert_check!(known, "host-1", Verdict::Known);
        assert_check!(known, "host-10", Verdict::Unknown);
        assert_check!(known, "bad.lab", Verdict::Unknown);
        assert!(wildcard_match("[*]:2222", "[nas]:2222"));
        assert!(!wildcard_match("a*b?", "ab"));
    }

    #[test]
    fn hashed_names_match_their_host_and_port() {
        // The hashed form of "[127.0.0.1]:2222" under this salt, as `ssh-keygen -H` writes it.
        let salt = BASE64.encode(b"0123456789abcdefghij");
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(b"0123456789abcdefghij")
            .unwrap()
            .chain_update(b"[127.0.0.1]:2222")
            .finalize()
            .into_bytes();
        let line = format!("|1|{salt}|{} ssh-ed25519 {ED25519}\n", BASE64.encode(&mac));
        let known = known(&line);
        assert_check!(known, "[127.0.0.1]:2222", Verdict::Known);
        assert_check!(known, "127.0.0.1", Verdict::Unknown);
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_also_pinned() {
        let known = known(&format!(
            "nas ssh-ed25519 {ED25519}\n@revoked * ssh-ed25519 {ED25519}\n"
        ));
        let Verdict::Revoked(entry) = known.check("nas", &key(ED25519)) else {
            panic!("revoked expected")
        };
        assert_eq!(entry.place(), "kh:2");
    }

    #[test]
    fn a_cert_authority_covering_the_host_is_not_ignored() {
        let known = known(&format!(
            "@cert-authority *.lab ssh-ed25519 {ED25519_OTHER}\n"
        ));
        assert_check!(known, "a.lab", Verdict::CertAuthority(_));
        assert_check!(known, "nas", Verdict::Unknown);
    }

    #[test]
    fn another_key_of_the_same_algorithm_is_a_change_and_names_its_line() {
        let known = known(&format!("\n\nnas ssh-ed25519 {ED25519_OTHER}\n"));
        let Verdict::Changed(entry) = known.check("nas", &key(ED25519)) else {
            panic!("changed expected")
        };
        assert_eq!(entry.line, 3);
    }

    #[test]
    fn a_host_pinned_under_another_algorithm_is_not_unknown_and_its_algorithm_goes_first() {
        let known = known(&format!("nas ecdsa-sha2-nistp256 {ECDSA}\n"));
        assert_check!(known, "nas", Verdict::OtherAlgorithms(_));
        assert_eq!(
            known.pinned_algorithms("nas"),
            [Algorithm::Ecdsa {
                curve: keys::EcdsaCurve::NistP256
            }]
        );
        assert!(known.pinned_algorithms("lab").is_empty());
    }

    #[test]
    fn unusable_lines_and_unknown_markers_are_skipped() {
        let known = known(&format!(
            "@bogus nas ssh-ed25519 {ED25519}\nnas ssh-ed25519 not-base64\nnas\n"
        ));
        assert_check!(known, "nas", Verdict::Unknown);
    }

    #[test]
    fn recorded_lines_read_back_as_known() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        record(&file, "[127.0.0.1]:2222", &key(ED25519)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("[127.0.0.1]:2222 ssh-ed25519 {ED25519}\n"));
        let known = KnownHosts::load(&[file]).unwrap();
        assert_check!(known, "[127.0.0.1]:2222", Verdict::Known);
    }
}
