//! Turning results into words and files. Nothing here measures or touches a socket; `export`
//! writes the report files the user asked for.

pub mod csv;
pub mod export;
pub mod json;
pub mod markdown;
pub mod svg;
pub mod text;

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
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        let (hostname, kernel) = if unsafe { libc::uname(&mut uts) } == 0 {
            (c_chars(&uts.nodename), c_chars(&uts.release))
        } else {
            (String::new(), String::new())
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

fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
