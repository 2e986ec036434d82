//! The coordinator of `mesh`, which measures between every selected pair of serves: its host
//! list ([`hosts`]: ranges, hosts file), its pairs and rounds ([`schedule`]), and the host that
//! stands out ([`verdict`]). Nothing here prints.

pub mod hosts;
pub mod schedule;
pub mod verdict;
