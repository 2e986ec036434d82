//! Unwritten extents and holes (FIEMAP): the parts of a file that read back as zeros without
//! touching the disk. A `fallocate`d, never-written file is all unwritten, and reads of it run at
//! memory speed, which is the trap behind the seed's misleading figures.

use std::fs::File;
use std::io;

use serde::Serialize;

use crate::sys::fs::{
    EXTENTS_PER_CALL, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_UNWRITTEN, FIEMAP_FLAG_SYNC, Fiemap, fiemap,
};

/// How much of a file is backed by data the disk would really have to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExtentMap {
    pub size: u64,
    /// Allocated but never written (`fallocate`): reads return zeros with no I/O.
    pub unwritten_bytes: u64,
    /// Not allocated at all (sparse): reads return zeros with no I/O.
    pub hole_bytes: u64,
}

impl ExtentMap {
    /// Fraction of the file (0 to 1) that reads would serve without disk I/O.
    pub fn zero_fraction(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            (self.unwritten_bytes + self.hole_bytes) as f64 / self.size as f64
        }
    }
}

/// Maps the file's extents. Fails with `Unsupported` on file systems without FIEMAP (tmpfs, NFS).
pub fn map_extents(file: &File) -> io::Result<ExtentMap> {
    let size = file.metadata()?.len();
    let mut map = ExtentMap {
        size,
        unwritten_bytes: 0,
        hole_bytes: 0,
    };
    let mut covered_to = 0u64;
    let mut request = Box::<Fiemap>::default();
    'calls: while covered_to < size {
        request.start = covered_to;
        request.length = size - covered_to;
        request.flags = FIEMAP_FLAG_SYNC;
        request.mapped_extents = 0;
        request.extent_count = EXTENTS_PER_CALL as u32;
        if let Err(err) = fiemap(file, &mut request) {
            return Err(match err.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) => {
                    io::Error::new(io::ErrorKind::Unsupported, err)
                }
                _ => err,
            });
        }
        let mapped = request.mapped_extents as usize;
        let before = covered_to;
        for extent in &request.extents[..mapped] {
            let start = extent.logical.max(covered_to).min(size);
            let end = (extent.logical + extent.length).min(size);
            if end <= start {
                continue;
            }
            map.hole_bytes += start - covered_to;
            if extent.flags & FIEMAP_EXTENT_UNWRITTEN != 0 {
                map.unwritten_bytes += end - start;
            }
            covered_to = end;
            if extent.flags & FIEMAP_EXTENT_LAST != 0 {
                break 'calls;
            }
        }
        if covered_to == before {
            break;
        }
    }
    // Past the last extent the file is a hole.
    map.hole_bytes += size.saturating_sub(covered_to);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_file_is_all_hole() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        match map_extents(&file) {
            Ok(map) => {
                assert_eq!(map.hole_bytes, 1 << 20);
                assert_eq!(map.zero_fraction(), 1.0);
            }
            Err(err) => assert_eq!(err.kind(), io::ErrorKind::Unsupported),
        }
    }
}
