//! The SSH server's keys: its host key, loaded from `--host-key` or made for the run, and the
//! client keys of `--authorized-keys` that may log in.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use russh::keys::{Algorithm, PrivateKey, PublicKey};

use crate::file;

/// The host key of `--host-key`, or a fresh ed25519 key when none is given; says which (a fresh
/// key is one clients cannot know in advance).
pub(super) fn host_key(path: Option<&Path>) -> Result<(PrivateKey, bool)> {
    Ok(match path {
        Some(path) => (load_host_key(path)?, false),
        None => (
            PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .map_err(|err| anyhow!("generating an ed25519 host key: {err}"))?,
            true,
        ),
    })
}

/// The keys of an OpenSSH authorized_keys file; blank and `#` lines are skipped. A line with
/// options (`from=`, `command=`, `restrict`...) is skipped, said in the returned notes: this
/// server cannot honour options, and ignoring them would let a key do more than was meant.
pub(super) fn load_authorized_keys(path: &Path) -> Result<(Vec<PublicKey>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow!(
            "cannot read --authorized-keys: {}",
            file::describe_path_error(path, err)
        )
    })?;
    let (mut keys, mut skipped) = (Vec::new(), Vec::new());
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", path.display(), index + 1);
        match line.parse::<russh::keys::ssh_key::authorized_keys::Entry>() {
            Ok(entry) if entry.config_opts().is_empty() => keys.push(entry.public_key().clone()),
            Ok(entry) => skipped.push(format!(
                "{at}: key skipped: it has options ({}) this server cannot honour; remove them to let the key in",
                entry.config_opts().as_str()
            )),
            Err(err) => skipped.push(format!("{at}: not a public key ({err}): skipped")),
        }
    }
    if keys.is_empty() {
        bail!(
            "--authorized-keys {} has no usable public key: put the client's id_ed25519.pub (or another .pub) in it{}",
            path.display(),
            skipped
                .first()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        );
    }
    Ok((keys, skipped))
}

/// An OpenSSH private key without a passphrase.
fn load_host_key(path: &Path) -> Result<PrivateKey> {
    if let Err(err) = std::fs::metadata(path) {
        bail!(
            "cannot read --host-key: {}",
            file::describe_path_error(path, err)
        );
    }
    russh::keys::load_secret_key(path, None).map_err(|err| {
        anyhow!(
            "cannot load the host key {}: {err}: give an OpenSSH private key without a passphrase (ssh-keygen -t ed25519 -N '' -f FILE)",
            path.display()
        )
    })
}
