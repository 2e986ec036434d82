//! `mesh --ssh-launch`: `xferbench serve` started on every host over SSH before the mesh, each
//! with a fresh random token, and stopped after it.
//!
//! Each host gets one SSH connection (the SSH path's own client: `~/.ssh/config`, known_hosts,
//! keys and agent) running [`WRAPPER`] under `sh -c`. The wrapper reads the token from the
//! channel's standard input (so it is never on a command line `ps` shows), writes it to a file
//! in a fresh `mktemp -d` (umask 077), starts serve there with `--token-file` and a fresh
//! `--root`, says `ready` once serve listens, then waits for its standard input to end. The
//! channel's close is the stop: OpenSSH kills no command without a terminal when a channel
//! closes, so the wrapper itself stops serve and removes its directory, whether the coordinator
//! stopped it, failed or died.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use russh::ChannelWriteHalf;
use russh::client::Msg;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use crate::interrupt::{self, Interrupted};
use crate::transport::Peer;
use crate::transport::ssh::command::{RemoteCommand, home_relative};
use crate::transport::ssh::exec::{Exec, Exit, Output};
use crate::transport::ssh::login::{self, LoginOptions, SshConnection, Target};

use super::MeshHost;

/// Longest the wrapper waits for serve to listen; the coordinator waits a little longer for
/// its word (an SSH login comes first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a login plus the wrapper's start may take beyond [`READY_TIMEOUT`].
const START_GRACE: Duration = Duration::from_secs(25);
/// Longest a wrapper may take to stop serve (SIGTERM, SIGKILL after 5 s) and remove its
/// directory once its channel's input ended.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The wrapper's exit statuses, each a reason of its own.
const NO_BINARY: u32 = 90;
const NO_TEMP_DIR: u32 = 91;
const NO_TOKEN: u32 = 92;
const SERVE_ENDED: u32 = 93;
const NOT_LISTENING: u32 = 94;

/// The far wrapper: `$1` the binary (empty: `xferbench` on the far PATH), `$2` the address
/// serve listens on; the token is the first line of standard input. One line, so that any
/// login shell hands it to `sh` whole. serve's output goes to a file: it logs each session.
const WRAPPER: &str = "trap '' PIPE; \
b=$1; \
if [ -z \"$b\" ]; then b=$(command -v xferbench) || exit 90; \
elif [ ! -f \"$b\" ] || [ ! -x \"$b\" ]; then exit 90; fi; \
umask 077; \
d=$(mktemp -d \"${TMPDIR:-/tmp}/xferbench-serve.XXXXXXXX\") || exit 91; \
if ! IFS= read -r t; then rm -rf \"$d\"; exit 92; fi; \
printf '%s\\n' \"$t\" > \"$d/token\"; \
mkdir \"$d/root\"; \
\"$b\" serve --listen \"$2\" --root \"$d/root\" --token-file \"$d/token\" < /dev/null > \"$d/log\" 2>&1 & \
p=$!; \
stop() { kill $p 2>/dev/null; i=0; \
while kill -0 $p 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
kill -9 $p 2>/dev/null; wait $p 2>/dev/null; rm -rf \"$d\"; }; \
trap 'stop; exit 143' HUP INT TERM; \
i=0; \
until grep -q '^listening on' \"$d/log\"; do \
if ! kill -0 $p 2>/dev/null; then wait $p; cat \"$d/log\" >&2; rm -rf \"$d\"; exit 93; fi; \
i=$((i+1)); if [ $i -gt 200 ]; then cat \"$d/log\" >&2; stop; exit 94; fi; \
sleep 0.1; \
done; \
echo ready; \
while IFS= read -r _; do :; done; \
stop";

/// How to start the serves.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// The SSH login, as `--via ssh` takes it (`-i`, `-F`, `--known-hosts`, …).
    pub login: LoginOptions,
    /// The far binary (`~/` is the login's home); None: `xferbench` on the far PATH.
    pub remote_binary: Option<String>,
}

/// One serve started over SSH, running until its channel closes.
struct FarServe {
    host: String,
    token: String,
    command: RemoteCommand,
    output: BufReader<Output>,
    input: ChannelWriteHalf<Msg>,
    /// Carries the channel; dropped last.
    _connection: SshConnection,
}

/// The serves started on a mesh's hosts, in the hosts' order. Dropped without
/// [`Launched::stop`], their SSH connections close and each wrapper stops its serve alone.
pub struct Launched {
    serves: Vec<FarServe>,
    runtime: tokio::runtime::Runtime,
}

/// Starts serve on every host at once. Errors: the first host (in the list's order) whose
/// serve did not start, in one line naming it and why; Ctrl-C ([`Interrupted`]) once every
/// start has ended. Either way the serves that did start are stopped first.
pub fn launch(hosts: &[MeshHost], options: &LaunchOptions) -> Result<Launched> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let binary = options
        .remote_binary
        .as_deref()
        .map(|path| home_relative(path).unwrap_or(path).to_string());
    let mut starts = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (login, listen) = ssh_peer(host)?;
        let target = Target::resolve(&login, &options.login)
            .with_context(|| format!("{}: cannot start serve over SSH", host.host))?;
        let command = RemoteCommand::Script {
            name: "xferbench-launch".into(),
            script: WRAPPER.into(),
            args: vec![binary.clone().unwrap_or_default(), listen.to_string()],
        };
        starts.push((host.host.clone(), Arc::new(target), command));
    }
    // Ctrl-C does not cut the starts short (each is bounded): a serve whose word had not come
    // yet would otherwise stop on its own, unconfirmed, after this process is gone.
    let (started, mut failed) = runtime.block_on(async {
        let mut tasks = JoinSet::new();
        for (index, (host, target, command)) in starts.into_iter().enumerate() {
            tasks.spawn(async move {
                let started = start(&target, command, host.clone())
                    .await
                    .with_context(|| host);
                (index, started)
            });
        }
        let mut started: Vec<Option<FarServe>> = hosts.iter().map(|_| None).collect();
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, Ok(serve))) => started[index] = Some(serve),
                Ok((index, Err(err))) => failed.push((index, err)),
                Err(err) => failed.push((usize::MAX, anyhow!("a start task failed: {err}"))),
            }
        }
        (started, failed)
    });
    let launched = Launched {
        serves: started.into_iter().flatten().collect(),
        runtime,
    };
    if interrupt::requested() {
        // What a stop could not confirm is beside the point after Ctrl-C.
        let _ = launched.stop();
        return Err(Interrupted.into());
    }
    failed.sort_by_key(|(index, _)| *index);
    let mut failed = failed.into_iter().map(|(_, err)| err);
    if let Some(first) = failed.next() {
        let others = failed.count();
        let _ = launched.stop();
        return Err(match others {
            0 => first,
            others => anyhow!(
                "{first:#} ({others} other host{} did not start serve either)",
                if others == 1 { "" } else { "s" }
            ),
        });
    }
    Ok(launched)
}

impl Launched {
    /// Each host's token, in the hosts' order.
    pub fn tokens(&self) -> Vec<String> {
        self.serves.iter().map(|s| s.token.clone()).collect()
    }

    /// Ends every serve's channel input and waits (at most 10 s each, all at once) for its
    /// wrapper to say it stopped serve and removed its directory. Errors: one line naming
    /// each host whose wrapper did not.
    pub fn stop(self) -> Result<()> {
        let Launched { serves, runtime } = self;
        let problems: Vec<String> = runtime.block_on(async {
            let mut tasks = JoinSet::new();
            for serve in serves {
                tasks.spawn(stop(serve));
            }
            let mut problems = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => problems.push(format!("{err:#}")),
                    Err(err) => problems.push(format!("a stop task failed: {err}")),
                }
            }
            problems
        });
        match problems.is_empty() {
            true => Ok(()),
            false => bail!(
                "stopping the serves started over SSH: {}",
                problems.join("; ")
            ),
        }
    }
}

/// The SSH login of `host` (its `user@` and name; the port is ssh_config's or 22) and the
/// address its serve listens on: a loopback address itself, else every address of its kind
/// (the name may reach the host by an address it does not hold, behind NAT).
pub fn ssh_peer(host: &MeshHost) -> Result<(Peer, SocketAddr)> {
    let peer = Peer::parse(&host.host).with_context(|| host.host.clone())?;
    let port = peer.serve_port();
    let address = peer.host.split('%').next().unwrap_or("").parse::<IpAddr>();
    let listen = match address {
        Ok(ip) if ip.is_loopback() => SocketAddr::new(ip, port),
        Ok(IpAddr::V6(_)) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        _ => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
    };
    let login = Peer {
        user: host.login.clone(),
        host: peer.host,
        port: None,
    };
    Ok((login, listen))
}

/// Logs in, starts the wrapper, hands it a fresh token and waits for its `ready`.
async fn start(target: &Arc<Target>, command: RemoteCommand, host: String) -> Result<FarServe> {
    let connection = login::connect(target, 0)
        .await
        .context("cannot start serve over SSH")?;
    let binary = match &command {
        RemoteCommand::Script { args, .. } => args.first().filter(|b| !b.is_empty()).cloned(),
        _ => None,
    };
    let Exec {
        command,
        output,
        input,
    } = Exec::start(&connection.handle, command).await?;
    let token = format!("{:032x}", rand::random::<u128>());
    input
        .data_bytes(format!("{token}\n").into_bytes())
        .await
        .map_err(|err| anyhow!("sending serve's token over SSH: {err}"))?;
    let mut output = BufReader::new(output);
    let mut line = String::new();
    let said = tokio::time::timeout(READY_TIMEOUT + START_GRACE, output.read_line(&mut line)).await;
    match said {
        Err(_) => bail!(
            "serve did not say it listens within {} s on the far side",
            (READY_TIMEOUT + START_GRACE).as_secs()
        ),
        Ok(Err(err)) => bail!("reading the far wrapper's word: {err}"),
        Ok(Ok(_)) if line.trim_end() == "ready" => {}
        Ok(Ok(_)) => {
            let exit = output.get_mut().finish().await;
            return Err(start_error(output.get_ref(), &command, exit, binary));
        }
    }
    Ok(FarServe {
        host,
        token,
        command,
        output,
        input,
        _connection: connection,
    })
}

/// Why the wrapper ended before serve listened, from its exit status.
fn start_error(
    output: &Output,
    command: &RemoteCommand,
    exit: Exit,
    binary: Option<String>,
) -> anyhow::Error {
    let said = output.stderr();
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let Exit::Status(status) = exit else {
        return output
            .check(command, exit)
            .err()
            .unwrap_or_else(|| anyhow!("the far wrapper ended"));
    };
    match status {
        NO_BINARY => match binary {
            Some(path) => anyhow!(
                "no xferbench at {path} on the far side (--remote-binary): copy the binary there first"
            ),
            None => anyhow!(
                "no xferbench on the far side's PATH (that of a command run over SSH): install it there, or give --remote-binary PATH"
            ),
        },
        NO_TEMP_DIR => anyhow!(
            "cannot make a temporary directory on the far side (mktemp -d in $TMPDIR or /tmp): {last}"
        ),
        NO_TOKEN => anyhow!("the far wrapper got no token: the SSH channel closed early"),
        SERVE_ENDED => anyhow!("serve ended on the far side before it listened: {last}"),
        NOT_LISTENING => anyhow!(
            "serve did not listen within {} s on the far side: {last}",
            READY_TIMEOUT.as_secs()
        ),
        _ => output
            .check(command, exit)
            .err()
            .unwrap_or_else(|| anyhow!("the far wrapper ended before serve listened")),
    }
}

/// Ends the channel's input and waits for the wrapper's exit status.
async fn stop(serve: FarServe) -> Result<()> {
    let FarServe {
        host,
        command,
        mut output,
        input,
        _connection,
        ..
    } = serve;
    let ended = tokio::time::timeout(STOP_TIMEOUT, async {
        input
            .eof()
            .await
            .map_err(|err| anyhow!("closing the SSH channel: {err}"))?;
        Ok::<_, anyhow::Error>(output.get_mut().finish().await)
    })
    .await;
    match ended {
        Err(_) => bail!(
            "{host}: serve did not stop within {} s of its SSH channel's end; look for it there",
            STOP_TIMEOUT.as_secs()
        ),
        Ok(Err(err)) => Err(err.context(host)),
        Ok(Ok(exit)) => output.get_ref().check(&command, exit).with_context(|| host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> MeshHost {
        MeshHost {
            host: text.into(),
            token: None,
            login: None,
        }
    }

    #[test]
    fn serve_listens_on_a_loopback_address_itself_and_elsewhere_on_every_address_of_its_kind() {
        let listen = |text: &str| ssh_peer(&host(text)).unwrap().1.to_string();
        assert_eq!(listen("127.0.0.2:5400"), "127.0.0.2:5400");
        assert_eq!(listen("[::1]"), "[::1]:5301");
        assert_eq!(listen("node1"), "0.0.0.0:5301");
        assert_eq!(listen("10.0.0.7:5302"), "0.0.0.0:5302");
        assert_eq!(listen("[fd00::7]:5302"), "[::]:5302");
    }

    #[test]
    fn the_ssh_login_takes_the_hosts_name_and_user_but_not_serves_port() {
        let mut node = host("node1:5302");
        node.login = Some("ann".into());
        let (login, _) = ssh_peer(&node).unwrap();
        assert_eq!(
            (login.user.as_deref(), login.host.as_str(), login.port),
            (Some("ann"), "node1", None)
        );
    }

    #[test]
    fn the_wrapper_is_one_line_a_posix_shell_reads() {
        assert!(!WRAPPER.contains('\n'));
        let checked = std::process::Command::new("sh")
            .args(["-n", "-c", WRAPPER])
            .status();
        if let Ok(status) = checked {
            assert!(status.success(), "sh -n refuses the wrapper");
        }
    }
}
