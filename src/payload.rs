//! Payload bytes: random, so that nothing on the path can compress or dedup them.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A fast pseudo-random byte stream (xoshiro256++): incompressible and never repeating,
/// several GB/s on one core, so filling a file runs at the disk's speed, not the CPU's.
pub struct RandomFill {
    rng: SmallRng,
}

impl RandomFill {
    /// A stream seeded from the operating system, different on every run.
    pub fn new() -> RandomFill {
        RandomFill {
            rng: rand::make_rng(),
        }
    }

    /// A reproducible stream, for tests and benches.
    pub fn with_seed(seed: u64) -> RandomFill {
        RandomFill {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        self.rng.fill_bytes(bytes);
    }
}

impl Default for RandomFill {
    fn default() -> Self {
        RandomFill::new()
    }
}
