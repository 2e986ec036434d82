//! The system calls xferbench makes, each behind a small safe function: the `unsafe` lives here,
//! one `// SAFETY:` line per block, so the floors above read as plain Rust.
//!
//! What stays elsewhere is unsafe that is the point of its module: the aligned buffer's allocation
//! (`disk::buffer`), io_uring entries (`disk::uring`), RDMA memory registration
//! (`transport::rdma`), and the batched UDP headers whose pointers are the batch's own buffers
//! (`transport::udp::wire`).

pub mod event;
pub mod fs;
pub mod host;
pub mod net;
pub mod socket;
