//! The page cache: how much of a file it holds, and asking it to let go.
//!
//! A buffered read of a cached file measures memory, not the disk. O_DIRECT avoids that; where
//! O_DIRECT is unsupported, the file is synced and dropped from the cache before it is read.

use std::fs::File;
use std::io;

/// Fraction (0 to 1) of the file's pages that are in the page cache now (mincore).
pub fn cached_fraction(file: &File) -> io::Result<f64> {
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0.0);
    }
    let pages = len.div_ceil(crate::sys::fs::page_size());
    let resident = crate::sys::fs::resident_pages(file, len)?;
    let cached = resident.iter().filter(|&&p| p & 1 != 0).count();
    Ok(cached as f64 / pages as f64)
}

/// Writes back the file's dirty pages and asks the kernel to drop all its cached pages.
pub fn drop_from_cache(file: &File) -> io::Result<()> {
    file.sync_data()?;
    crate::sys::fs::fadvise(file, libc::POSIX_FADV_DONTNEED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_just_written_is_cached_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(&vec![7u8; 1 << 20]).unwrap();
        assert!(cached_fraction(&file).unwrap() > 0.9);
        drop_from_cache(&file).unwrap();
        let after = cached_fraction(&file).unwrap();
        // tmpfs cannot drop pages (they are the file), a disk file system can.
        if !super::super::is_tmpfs(dir.path()) {
            assert!(after < 0.1, "still cached: {after}");
        }
    }
}
