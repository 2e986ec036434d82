//! `copy -r` over the TCP path: a tree to or from `serve` as records on `-P` data connections
//! (`transport::tree::stream`), with one control connection for the setup and the server's
//! figures. Up: this side walks and sends, serve lands. Down: serve walks and sends, this side
//! lands with the local copy's landing code.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::{Session, Tcp, loopback_warning};
use crate::control::client::RESULT_TIMEOUT;
use crate::control::{Reply, Request, TreeDone, TreeRequest};
use crate::file::tree::{Listed, Totals};
use crate::measure::{Conditions, Counter, CpuClock, Interval, Measurement, Watcher, Workload};
use crate::transport::pipeline::STALL_TIMEOUT;
use crate::transport::tree::stream::{self, SendOptions, Wire};
use crate::transport::tree::{self, Rules, TreePlan, TreeReport};
use crate::transport::{Location, TransportKind};
use crate::warning::Warning;

impl Tcp {
    /// `copy -r` between this machine and the server, either way.
    pub(super) fn tree(&self, plan: &TreePlan, watcher: &dyn Watcher) -> Result<TreeReport> {
        match (&plan.source, &plan.destination) {
            (Location::Local(source), Location::Remote { path, .. }) => {
                self.upload_tree(plan, source, path, watcher)
            }
            (Location::Remote { path, .. }, Location::Local(destination)) => {
                self.download_tree(plan, path, destination, watcher)
            }
            _ => bail!("one side of a copy -r must be local and the other host:path"),
        }
    }

    fn upload_tree(
        &self,
        plan: &TreePlan,
        source: &Path,
        remote: &str,
        watcher: &dyn Watcher,
    ) -> Result<TreeReport> {
        tree::check_source(source)?;
        let name = tree::source_name(source)?;
        let name = name
            .to_str()
            .ok_or_else(|| anyhow!("{}: the tree's name is not UTF-8", source.display()))?
            .to_string();
        let totals = crate::file::tree::count(source);
        let request = Request::TreeReceive(TreeRequest {
            path: remote.to_string(),
            name: Some(name),
            totals: Some(totals),
            streams: plan.workers as u32,
            block: plan.block as u32,
            verify: plan.verify,
            force: plan.force,
            fsync: plan.fsync,
        });
        let (mut session, ready) = self.client.block_on(self.tree_session(&request, plan))?;
        let mut warnings: Vec<Warning> = loopback_warning(&session.control).into_iter().collect();
        let wires = self.wires(&mut session)?;
        let (bytes, files) = (Counter::new(), Counter::new());
        watcher.begin_files("copy", totals.bytes, &bytes, totals.files, &files);
        let cpu = CpuClock::start();
        let named = |relative: &Path| tree::join(source, relative).display().to_string();
        let options = SendOptions {
            block: plan.block,
            verify: plan.verify,
        };
        let (outcome, elapsed, intervals) = tree::sampled(&bytes, || {
            let sent = stream::send(source, wires, options, &bytes, &files, &named);
            let sent = self
                .client
                .block_on(self.client.explained(&mut session.control, sent))?;
            let done = self.client.block_on(self.tree_done(&mut session))?;
            Ok::<_, anyhow::Error>((sent, done))
        });
        watcher.end();
        let (sent, done) = outcome?;
        warnings.extend(done.warnings.iter().cloned());
        let mut failed = sent.failed;
        failed.merge(done.failed);
        Ok(self.report(
            plan,
            source.display().to_string(),
            format!("{}:{}", self.server(), ready.path),
            Outcome {
                landed: done.landed,
                failed,
                changed: done.changed,
                skipped: sent.skipped,
            },
            (elapsed, intervals),
            (cpu, done.cpu),
            None,
            warnings,
        ))
    }

    fn download_tree(
        &self,
        plan: &TreePlan,
        remote: &str,
        destination: &Path,
        watcher: &dyn Watcher,
    ) -> Result<TreeReport> {
        let request = Request::TreeSend(TreeRequest {
            path: remote.to_string(),
            name: None,
            totals: None,
            streams: plan.workers as u32,
            block: plan.block as u32,
            verify: plan.verify,
            force: plan.force,
            fsync: plan.fsync,
        });
        // The destination is checked before the server starts sending.
        let (session, ready) = self.client.block_on(async {
            let (control, reply) = self.client.open(&request).await?;
            match reply {
                Reply::TreeReady {
                    session,
                    port,
                    path,
                    name,
                    totals,
                } => Ok((
                    Session {
                        control,
                        streams: Vec::new(),
                        size: None,
                        partial: None,
                        id: session,
                        port,
                        window: None,
                    },
                    Ready { path, name, totals },
                )),
                other => Err(self.client.unexpected(other)),
            }
        })?;
        let name = ready
            .name
            .clone()
            .ok_or_else(|| anyhow!("{}: the server did not name the tree", self.server()))?;
        let plain = stream::checked_relative(name.as_bytes(), false)
            .is_ok_and(|name| name.components().count() == 1);
        if !plain {
            bail!(
                "{}: '{name}' is not a plain name for the tree",
                self.server()
            );
        }
        let target = tree::landing_target(destination, name.as_ref())?;
        let totals = ready.totals.unwrap_or_default();
        let mut session = self.client.block_on(self.start(session, plan.workers))?;
        let mut warnings: Vec<Warning> = loopback_warning(&session.control).into_iter().collect();
        if crate::file::is_tmpfs(&crate::file::parent_dir(&target)) {
            warnings.push(Warning::MemoryFileSystem {
                path: target.clone(),
            });
        }
        let wires = self.wires(&mut session)?;
        let (bytes, files) = (Counter::new(), Counter::new());
        watcher.begin_files("copy", totals.bytes, &bytes, totals.files, &files);
        let cpu = CpuClock::start();
        let named = |relative: &Path| tree::join(&target, relative).display().to_string();
        let rules = Rules::of(plan);
        let (outcome, elapsed, intervals) = tree::sampled(&bytes, || {
            stream::receive(
                &target, wires, rules, None, plan.block, &bytes, &files, &named,
            )
        });
        watcher.end();
        let received = self
            .client
            .block_on(self.client.explained(&mut session.control, outcome))?;
        let done = self.client.block_on(self.tree_done(&mut session))?;
        warnings.extend(done.warnings.iter().cloned());
        let mut failed = received.failed;
        failed.merge(done.failed);
        Ok(self.report(
            plan,
            format!("{}:{}", self.server(), ready.path),
            target.display().to_string(),
            Outcome {
                landed: received.landed,
                failed,
                changed: received.changed,
                skipped: done.skipped,
            },
            (elapsed, intervals),
            (cpu, done.cpu),
            Some(&target),
            warnings,
        ))
    }

    /// Sends a tree request, reads its `tree_ready`, joins the data connections.
    async fn tree_session(&self, request: &Request, plan: &TreePlan) -> Result<(Session, Ready)> {
        let (control, reply) = self.client.open(request).await?;
        let (session, ready) = match reply {
            Reply::TreeReady {
                session,
                port,
                path,
                name,
                totals,
            } => (
                Session {
                    control,
                    streams: Vec::new(),
                    size: None,
                    partial: None,
                    id: session,
                    port,
                    window: None,
                },
                Ready { path, name, totals },
            ),
            other => return Err(self.client.unexpected(other)),
        };
        Ok((self.start(session, plan.workers).await?, ready))
    }

    /// The session's data connections as bounded blocking ones.
    fn wires(&self, session: &mut Session) -> Result<Vec<Wire>> {
        let abort = Arc::new(AtomicBool::new(false));
        let streams = std::mem::take(&mut session.streams);
        self.client.block_on(async {
            streams
                .into_iter()
                .map(|stream| {
                    Ok(Wire::new(
                        stream.into_std()?,
                        STALL_TIMEOUT,
                        self.server(),
                        abort.clone(),
                    )?)
                })
                .collect()
        })
    }

    /// The server's figures of a tree copy (it may still be fsyncing).
    async fn tree_done(&self, session: &mut Session) -> Result<TreeDone> {
        match self
            .client
            .reply(&mut session.control, RESULT_TIMEOUT)
            .await?
        {
            Reply::TreeDone(done) => Ok(done),
            other => Err(self.client.unexpected(other)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        plan: &TreePlan,
        source: String,
        destination: String,
        outcome: Outcome,
        (elapsed, intervals): (Duration, Vec<Interval>),
        (cpu, remote_cpu): (CpuClock, crate::measure::CpuUse),
        local_target: Option<&Path>,
        warnings: Vec<Warning>,
    ) -> TreeReport {
        let conditions = Conditions {
            fsync_included: true,
            block_size: Some(plan.block as u64),
            path: Some(TransportKind::Tcp),
            streams: Some(plan.workers),
            mount: local_target.map(crate::mounts::facts),
            ..Conditions::default()
        };
        let measurement = Measurement::new(
            Workload::Copy,
            outcome.landed.bytes,
            elapsed,
            conditions,
            intervals,
        );
        TreeReport {
            source,
            destination,
            path: TransportKind::Tcp,
            files_per_sec: tree::per_sec(outcome.landed.files, elapsed),
            measurement,
            landed: outcome.landed,
            fsync: plan.fsync,
            workers: plan.workers,
            verified: plan.verify,
            failed: outcome.failed,
            changed: outcome.changed,
            skipped: outcome.skipped,
            cpu: cpu.finish(),
            remote_cpu: Some(remote_cpu),
            far_tool: None,
            warnings,
        }
    }
}

/// What the server's `tree_ready` said.
struct Ready {
    path: String,
    name: Option<String>,
    totals: Option<Totals>,
}

/// What landed and what did not, both sides' lists put together.
struct Outcome {
    landed: Totals,
    failed: Listed,
    changed: Listed,
    skipped: Listed,
}
