//! The RDMA WRITE path (`--via rdma`, cargo feature `rdma`): RC queue pairs set up over `serve`'s
//! control connection, the way perftest does without rdma_cm.
//!
//! `verbs` wraps sideway (libibverbs, loaded at run time); `net` is the memory-to-memory test
//! (write latency by ping-pong, then write bandwidth); `copy` moves a file through registered
//! slots with RDMA WRITE WITH IMMEDIATE and credits; `client` is the transport; the server's half
//! is `serve::rdma`. Without the feature the path still parses and says how to get it.

#[cfg(feature = "rdma")]
mod client;
#[cfg(feature = "rdma")]
pub(crate) mod copy;
#[cfg(feature = "rdma")]
pub(crate) mod net;
#[cfg(feature = "rdma")]
pub(crate) mod verbs;

#[cfg(feature = "rdma")]
pub use client::Rdma;

/// What a machine without a usable RDMA device is told.
pub const NO_DEVICE: &str =
    "no RDMA device found (is rdma-core installed and a device up? see `ibv_devices`)";
/// What a build without the `rdma` feature says when the path is asked for.
pub const NOT_BUILT: &str = "this build has no RDMA support: rebuild with --features rdma \
     (building it needs cmake and libclang; Debian: apt-get install cmake libclang-dev)";
/// Round trips of the latency test, after [`LATENCY_WARMUP`] uncounted ones (ib_write_lat's -n).
pub const LATENCY_ROUND_TRIPS: u32 = 1000;
pub const LATENCY_WARMUP: u32 = 100;
/// Bytes per write of the latency test: the round's number.
pub const LATENCY_SIZE: usize = 8;
/// Largest RDMA WRITE a test may ask for (the server's limit too).
pub const MAX_SIZE: usize = 64 << 20;
/// Most WRITEs in flight a test may ask for.
pub const MAX_DEPTH: usize = 4096;
/// Most memory the target of a bandwidth test registers; writes cycle through it.
pub const MAX_TARGET_BYTES: usize = 64 << 20;

/// Which device and GID to use, like perftest's `-d` and `-x`.
#[derive(Debug, Clone, Default)]
pub struct RdmaOptions {
    /// None: the first device.
    pub device: Option<String>,
    /// None: a RoCE v2 GID with an IPv4 address if there is one.
    pub gid_index: Option<u8>,
}

/// Slots the target of a bandwidth test offers: one per write in flight, within [`MAX_TARGET_BYTES`].
pub fn target_slots(size: usize, depth: usize) -> usize {
    depth.min((MAX_TARGET_BYTES / size.max(1)).max(1)).max(1)
}

#[cfg(not(feature = "rdma"))]
mod absent {
    use anyhow::{Result, bail};

    use super::{NOT_BUILT, RdmaOptions};
    use crate::control::Client;
    use crate::measure::Watcher;
    use crate::transport::{
        CopyPlan, CopyReport, LatPlan, LatReport, NetPlan, NetReport, Peer, Transport,
        TransportKind,
    };

    /// The RDMA path of a build without it: every use says how to get it.
    pub struct Rdma;

    impl Rdma {
        pub fn new(_peer: Peer, _token: Option<String>, _options: RdmaOptions) -> Result<Rdma> {
            bail!(NOT_BUILT)
        }

        pub fn with_client(_client: Client, _options: RdmaOptions) -> Result<Rdma> {
            bail!(NOT_BUILT)
        }
    }

    impl Transport for Rdma {
        fn kind(&self) -> TransportKind {
            TransportKind::Rdma
        }

        fn mem_to_mem(&self, _plan: &NetPlan, _watcher: &dyn Watcher) -> Result<NetReport> {
            bail!(NOT_BUILT)
        }

        fn copy(&self, _plan: &CopyPlan, _watcher: &dyn Watcher) -> Result<CopyReport> {
            bail!(NOT_BUILT)
        }

        fn latency(&self, _plan: &LatPlan) -> Result<LatReport> {
            bail!(NOT_BUILT)
        }
    }
}

#[cfg(not(feature = "rdma"))]
pub use absent::Rdma;

#[cfg(feature = "rdma")]
pub use pulse::Pulse;

#[cfg(feature = "rdma")]
mod pulse {
    use std::os::fd::RawFd;
    use std::time::{Duration, Instant};

    use anyhow::{Result, bail};

    use crate::control::connection::{Peeked, peek};
    use crate::interrupt;
    use crate::measure::{Counter, Interval, IntervalClock};

    /// No completion for this long means the peer is gone or wedged.
    const STALL_TIMEOUT: Duration = Duration::from_secs(60);
    /// How often the slow checks run.
    const CHECK_EVERY: Duration = Duration::from_millis(50);
    /// How long a message from the peer may wait while this side finishes: a receiver's
    /// results can arrive just before the sender polls its last acknowledgments.
    const MESSAGE_GRACE: Duration = Duration::from_secs(2);

    /// Keeps a polling loop honest without slowing it: stops it on Ctrl-C, when the peer's
    /// control connection closes or speaks, or when nothing moves for a minute; cuts the
    /// progress counter into intervals; and gives the CPU away while idle.
    pub struct Pulse {
        control: RawFd,
        passes: u32,
        idle: u32,
        last_check: Instant,
        last_progress: Instant,
        /// Since when a message from the peer has been waiting.
        spoke: Option<Instant>,
        sampled: Option<(Counter, IntervalClock)>,
    }

    impl Pulse {
        /// Watches the control connection `control` (a TCP socket this side keeps open).
        pub fn new(control: RawFd) -> Pulse {
            let now = Instant::now();
            Pulse {
                control,
                passes: 0,
                idle: 0,
                last_check: now,
                last_progress: now,
                spoke: None,
                sampled: None,
            }
        }

        /// Also cuts `counter` into 1 s intervals.
        pub fn sampling(mut self, counter: &Counter) -> Pulse {
            self.sampled = Some((
                counter.clone(),
                IntervalClock::start(crate::measure::DEFAULT_INTERVAL),
            ));
            self
        }

        /// One pass of the loop; `moved` when it finished something.
        pub fn pass(&mut self, moved: bool) -> Result<()> {
            self.passes = self.passes.wrapping_add(1);
            if moved {
                self.idle = 0;
                self.last_progress = Instant::now();
            } else {
                self.idle = self.idle.saturating_add(1);
                // Spinning is what RDMA polling is; yielding now and then lets the other
                // threads of a small machine (the disk engine, soft-RoCE) run.
                if self.idle.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            if self.passes.is_multiple_of(256) && self.last_check.elapsed() >= CHECK_EVERY {
                self.check()?;
            }
            Ok(())
        }

        fn check(&mut self) -> Result<()> {
            self.last_check = Instant::now();
            interrupt::check()?;
            if let Some((counter, clock)) = &mut self.sampled {
                clock.observe(counter.get());
            }
            match peek(self.control) {
                Peeked::Closed => {
                    bail!("the peer closed the control connection (stopped or killed?)")
                }
                Peeked::Message => {
                    let since = *self.spoke.get_or_insert_with(Instant::now);
                    if since.elapsed() > MESSAGE_GRACE {
                        // Its error waits there; the caller reads it to explain.
                        bail!("the peer stopped the transfer");
                    }
                }
                Peeked::Nothing => {}
            }
            if self.last_progress.elapsed() > STALL_TIMEOUT {
                bail!(
                    "no RDMA completion for {} s: the peer stopped answering",
                    STALL_TIMEOUT.as_secs()
                );
            }
            Ok(())
        }

        /// The intervals cut so far, the last one closed now.
        pub fn intervals(self) -> Vec<Interval> {
            match self.sampled {
                Some((counter, clock)) => clock.finish(counter.get()).1,
                None => Vec::new(),
            }
        }
    }
}
