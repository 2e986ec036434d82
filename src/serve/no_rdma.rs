//! The server's half of the RDMA path in a build without it: each request gets one clear answer.

use anyhow::{Result, bail};

use super::Shared;
use crate::control::{Connection, RdmaFileRequest, RdmaNetRequest, Reply};

const NOT_BUILT: &str =
    "this server has no RDMA support: rebuild its xferbench with --features rdma";

pub(super) async fn net(_: &Shared, _: &mut Connection, _: RdmaNetRequest) -> Result<Reply> {
    bail!(NOT_BUILT)
}

pub(super) async fn receive(_: &Shared, _: &mut Connection, _: RdmaFileRequest) -> Result<Reply> {
    bail!(NOT_BUILT)
}

pub(super) async fn send(_: &Shared, _: &mut Connection, _: RdmaFileRequest) -> Result<Reply> {
    bail!(NOT_BUILT)
}
