//! Every integration test in one binary (as ripgrep lays them out): one link instead of one per
//! file. One area at a time: `cargo test --test integration copy::`.

mod common;

mod bad_input;
mod copy;
mod diff;
mod disk;
mod r#gen;
mod interrupt;
mod knee;
mod lat;
mod layers;
mod mesh;
mod mesh_lab;
mod mesh_launch;
mod net;
#[cfg(feature = "rdma")]
mod rdma;
mod run;
mod run_to;
mod serve;
mod share;
mod share_faults;
mod ssh;
mod ssh_bounds;
mod ssh_serve;
mod sshd_fixture;
mod tree;
mod tree_ssh;
mod tree_tcp;
mod udp;
