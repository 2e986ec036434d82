//! Turning results into words and files. Nothing here measures or touches a socket; `export`
//! writes the report files the user asked for.

pub mod csv;
pub mod export;
pub mod json;
pub mod markdown;
pub mod stream;
pub mod svg;
pub mod text;

#[cfg(test)]
mod run_tests;

use serde::Serialize;

/// Version of the JSON report layout; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

/// The machine a report was made on.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel: String,
    pub cpus: usize,
    pub xferbench: &'static str,
}

impl HostInfo {
    pub fn current() -> HostInfo {
        let (hostname, kernel) = match crate::sys::host::uname() {
            Ok(uname) => (uname.nodename, uname.release),
            Err(_) => (String::new(), String::new()),
        };
        HostInfo {
            hostname,
            kernel,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            xferbench: env!("CARGO_PKG_VERSION"),
        }
    }
}
