//! xferbench: how fast a file really goes from this disk to that disk, and what holds it back.
//!
//! The binary is a thin shell over this library, so tests and benches run the same code.
//!
//! # Layout
//! Floors, bottom to top; a module imports only the floors below it (`tests/integration/layers.rs`), and
//! `ARCHITECTURE.md` draws the map and the control protocol.
//! - vocabulary: [`sys`] (the system calls, behind safe functions), [`units`], [`warning`], [`interrupt`], [`payload`], [`ceiling`], [`mounts`], [`classes`]
//! - [`measure`]: one `Measurement` for every path, and the words a figure is about
//! - [`file`]: file-system primitives (`Landing`, O_DIRECT, allocation, page cache)
//! - [`disk`]: the disk engine, baselines and test files
//! - [`control`]: the control protocol's frames, requests, replies and exchanged figures, and
//!   its client (`control::Client`, shared by the tcp, udp and rdma paths)
//! - [`transport`]: the paths (tcp, ssh, rdma, udp) behind one trait, and the copy pipeline
//! - [`serve`]: the peer daemon
//! - [`plan`]: what `run` measures, and the verdict
//! - [`mesh`]: the coordinator of `mesh`: pairs of serves measured toward each other, in rounds
//! - [`diff`]: two reports of one command compared, figure by figure
//! - [`report`], [`progress`]: exporters and progress bars
//! - [`cli`]: flags and their checks

pub mod ceiling;
pub mod classes;
pub mod cli;
pub mod control;
pub mod diff;
pub mod disk;
pub mod file;
pub mod interrupt;
pub mod measure;
pub mod mesh;
pub mod mounts;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod report;
pub mod serve;
pub mod sys;
pub mod transport;
pub mod units;
pub mod warning;
