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

/// Bytes between two stamps: a 4 KiB page, the unit a block layer, a page cache or a dedup
/// table deals in.
pub const PAGE: usize = 4096;

/// Bytes of random base the stamped stream cycles through: 4 MiB, above the window of a
/// filesystem's or a NAS's usual compressor (zstd level 3 keeps 2 MiB; lz4 and gzip 64 and
/// 32 KiB; btrfs compresses 128 KiB extents, ZFS records of 128 KiB or 1 MiB by default), so
/// none of them finds a repeat.
const STAMPED_BASE: usize = 4 << 20;

/// A cheap incompressible stream for writes that time a disk: a random base made once and
/// cycled through, with a fresh random word stamped at the start of every 4 KiB page. No two
/// pages are alike, so nothing that dedups 4 KiB or coarser finds a repeat; filling costs a
/// memory copy, so the CPU is not what gets timed where it is slow (a debug build on an
/// emulated CPU makes fresh random bytes at 12 MB/s). fio does the same in spirit: one random
/// buffer, lightly scrambled per write (`scramble_buffers`).
pub struct StampedFill {
    base: Vec<u8>,
    at: usize,
    random: RandomFill,
    words: Vec<u8>,
}

impl StampedFill {
    /// A stream whose base is at least `block` bytes (and at least 4 MiB).
    pub fn new(block: usize) -> StampedFill {
        let mut random = RandomFill::new();
        let mut base = vec![0; block.max(STAMPED_BASE).next_multiple_of(PAGE)];
        random.fill(&mut base);
        StampedFill {
            base,
            at: 0,
            random,
            words: Vec::new(),
        }
    }

    /// Fills `block` with the next bytes of the stream: the base from where the last fill
    /// stopped, a fresh 8-byte word at the start of each 4 KiB page of `block`.
    pub fn fill(&mut self, block: &mut [u8]) {
        let mut done = 0;
        while done < block.len() {
            let n = (block.len() - done).min(self.base.len() - self.at);
            block[done..done + n].copy_from_slice(&self.base[self.at..self.at + n]);
            done += n;
            self.at = (self.at + n) % self.base.len();
        }
        self.words.resize(block.len().div_ceil(PAGE) * 8, 0);
        self.random.fill(&mut self.words);
        for (page, word) in block.chunks_mut(PAGE).zip(self.words.chunks(8)) {
            let n = page.len().min(8);
            page[..n].copy_from_slice(&word[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_stamped_pages_are_alike_and_none_are_zeros() {
        for block in [4096, 64 << 10, 5 << 20] {
            let mut payload = StampedFill::new(block);
            let mut pages = std::collections::HashSet::new();
            for _ in 0..(12 << 20) / block {
                let mut buf = vec![0u8; block];
                payload.fill(&mut buf);
                for page in buf.chunks(PAGE) {
                    assert!(page.iter().any(|&b| b != 0));
                    assert!(pages.insert(page.to_vec()), "a page was written twice");
                }
            }
        }
        // A short tail block is filled too.
        let mut payload = StampedFill::new(4096);
        let mut tail = vec![0u8; 5000];
        payload.fill(&mut tail);
        assert!(tail[PAGE..].iter().any(|&b| b != 0));
    }

    #[test]
    fn small_blocks_walk_the_whole_base_before_it_repeats() {
        // Without the walk, 4 KiB blocks would all share one page's bytes past the stamp and
        // a compressor would shrink them to nothing.
        let mut payload = StampedFill::new(4096);
        let mut first = vec![0u8; PAGE];
        payload.fill(&mut first);
        let mut next = vec![0u8; PAGE];
        payload.fill(&mut next);
        assert_ne!(first[8..], next[8..]);
        for _ in 2..STAMPED_BASE / PAGE {
            payload.fill(&mut next);
        }
        payload.fill(&mut next);
        assert_eq!(first[8..], next[8..], "the base cycles after 4 MiB");
    }
}
