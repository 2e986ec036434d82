//! The JSON report: one object per command, versioned by `schema`.

use serde::Serialize;

use super::{HostInfo, SCHEMA};

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema: u32,
    command: &'a str,
    host: HostInfo,
    #[serde(flatten)]
    result: &'a T,
}

/// `{"schema": 1, "command": ..., "host": {...}, ...result fields}` as pretty JSON.
pub fn render<T: Serialize>(command: &str, result: &T) -> String {
    let envelope = Envelope {
        schema: SCHEMA,
        command,
        host: HostInfo::current(),
        result,
    };
    serde_json::to_string_pretty(&envelope).expect("reports serialise")
}
