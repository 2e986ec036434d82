//! xferbench: how fast a file really goes from this disk to that disk, and what holds it back.
//!
//! The binary is a thin shell over this library, so tests and benches run the same code.

pub mod ceiling;
pub mod classes;
pub mod cli;
pub mod control;
pub mod disk;
pub mod file;
pub mod interrupt;
pub mod measure;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod report;
pub mod serve;
pub mod transport;
pub mod units;
pub mod warning;
