//! The SSH path: SCP-like copies over SSH, to a stock OpenSSH server (nothing of ours on the far
//! side) or to `serve`'s embedded SSH server.

pub mod command;
pub mod exec;
pub mod login;
pub mod scp;
