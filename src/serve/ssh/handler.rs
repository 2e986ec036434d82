//! One SSH connection: the russh [`Handler`](russh::server::Handler) that checks logins against
//! `--authorized-keys`, opens channels up to a limit, parses each exec request and hands it to
//! [`run_command`] on the channel's own task; shells, subsystems, ptys and the rest are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::{HashAlg, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{AbortHandle, JoinSet};

use super::commands::{run_command, shown};
use crate::serve::Shared;
use crate::transport::ssh::command::RemoteCommand;

/// Channels one connection may hold at once; each command holds a channel's buffers.
const MAX_CHANNELS: usize = 8;

/// One SSH connection, from the handshake until it closes; holds its `--max-clients` slot.
pub(super) async fn serve_connection(
    config: Arc<russh::server::Config>,
    authorized: Arc<Vec<PublicKey>>,
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let handler = SshHandler {
        shared: shared.clone(),
        authorized,
        peer,
        user: String::new(),
        channels: HashMap::new(),
        commands: JoinSet::new(),
        running: HashMap::new(),
        refusal_logged: false,
    };
    let outcome = match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => session.await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(()) => {}
        Err(russh::Error::InactivityTimeout) => (shared.log)(&format!(
            "{peer}: ssh: closed after {} s without a message (--idle-timeout)",
            shared.idle_timeout.as_secs_f64()
        )),
        // A client that goes away mid-session is not news: its commands say what they lost.
        Err(russh::Error::Disconnect | russh::Error::HUP | russh::Error::IO(_)) => {}
        Err(err) => (shared.log)(&format!("{peer}: ssh: {err}")),
    }
}

/// The russh handler of one connection: authentication, channels, and their requests.
struct SshHandler {
    shared: Arc<Shared>,
    authorized: Arc<Vec<PublicKey>>,
    peer: SocketAddr,
    user: String,
    /// Session channels opened and waiting for their request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The commands running on this connection: dropped (and their partial files removed)
    /// when the connection ends.
    commands: JoinSet<()>,
    running: HashMap<ChannelId, AbortHandle>,
    refusal_logged: bool,
}

impl SshHandler {
    fn allows(&self, key: &PublicKey) -> bool {
        self.authorized
            .iter()
            .any(|allowed| allowed.key_data() == key.key_data())
    }

    fn refuse_key(&mut self, user: &str, key: &PublicKey) -> Auth {
        // A client may offer several keys: one line per connection is enough.
        if !self.refusal_logged {
            self.refusal_logged = true;
            (self.shared.log)(&format!(
                "{}: ssh: key {} of user '{user}' is not in --authorized-keys: refused",
                self.peer,
                key.fingerprint(HashAlg::Sha256)
            ));
        }
        Auth::reject()
    }

    /// Says why on the channel's stderr, then ends the channel with `status`, as a shell would
    /// for a command it cannot run. (A failed request instead would make the client hang up
    /// before it shows the message.)
    fn refuse(
        &mut self,
        session: &mut Session,
        channel: ChannelId,
        message: &str,
        status: u32,
    ) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        (self.shared.log)(&format!("{}: ssh {}: {message}", self.peer, self.user));
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("{message}\n").into_bytes())?;
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

impl russh::server::Handler for SshHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.allows(offer.public_key) {
            Auth::Accept
        } else {
            self.refuse_key(user, offer.public_key)
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.allows(key.public_key) {
            return Ok(self.refuse_key(user, key.public_key));
        }
        self.user = user.to_string();
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        while self.commands.try_join_next().is_some() {}
        self.running.retain(|_, command| !command.is_finished());
        if self.channels.len() + self.running.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        reply.accept().await;
        self.channels.insert(channel.id(), channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        // A command still sending to a closed channel would wait for window forever.
        if let Some(command) = self.running.remove(&channel) {
            command.abort();
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A second request on a channel whose command runs already.
        let Some(opened) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        let line = String::from_utf8_lossy(data);
        let Some(command) = RemoteCommand::parse(&line) else {
            let message = format!(
                "xferbench serve runs no shell: '{}' is not a command it knows (it understands scp -t/-f, and the SSH path's own commands)",
                shown(&line)
            );
            return self.refuse(session, channel, &message, 127);
        };
        session.channel_success(channel)?;
        let running = self.commands.spawn(run_command(
            self.shared.clone(),
            format!("{}: ssh {}", self.peer, self.user),
            opened,
            command,
        ));
        self.running.insert(channel, running);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(
            session,
            channel,
            "xferbench serve runs no shell: it takes scp -t/-f and the SSH path's own commands only",
            1,
        )
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let message = format!(
            "xferbench serve has no '{}' subsystem: use scp -O (the legacy SCP protocol)",
            shown(name)
        );
        self.refuse(session, channel, &message, 1)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}
