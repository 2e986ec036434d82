//! The file system: space (fallocate, statvfs, statfs), the page cache (posix_fadvise, mincore),
//! and extents (the FIEMAP ioctl, with its structures from <linux/fiemap.h>).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// An anonymous file in memory (memfd_create, close-on-exec): its pages live in the page cache,
/// so sendfile(2) can hand them to a socket.
pub fn memfd(name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// sendfile(2): up to `count` bytes of `file` from `*offset` to `socket`, without passing
/// through this process; `*offset` moves past what was sent. Returns the bytes sent.
pub fn sendfile(
    socket: std::os::fd::BorrowedFd<'_>,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut at = *offset as libc::off_t;
    // SAFETY: both descriptors are borrowed for the call; `at` is a valid off_t it updates.
    let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut at, count) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = at as u64;
    Ok(sent as usize)
}

/// Reserves the first `len` bytes of the file (fallocate, mode 0).
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    // SAFETY: fallocate takes no pointers; the descriptor is borrowed from `file` for the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// statvfs of the file system holding `path` (InvalidInput for a path with a NUL).
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    // SAFETY: statvfs is plain integers, and libc::statvfs fills one in from a C path.
    unsafe { stat_of(path, libc::statvfs) }
}

/// statfs of the file system holding `path` (InvalidInput for a path with a NUL).
pub fn statfs(path: &Path) -> io::Result<libc::statfs> {
    // SAFETY: statfs is plain integers, and libc::statfs fills one in from a C path.
    unsafe { stat_of(path, libc::statfs) }
}

/// Calls `stat` (statvfs or statfs) on `path` into a zeroed `T`.
///
/// # Safety
/// `T` must be plain integers (all zeros a valid value), and `stat` must only read the C
/// string and write one `T`.
unsafe fn stat_of<T>(
    path: &Path,
    stat: unsafe extern "C" fn(*const libc::c_char, *mut T) -> libc::c_int,
) -> io::Result<T> {
    let c_path = c_path(path)?;
    // SAFETY: the caller vouches that all zeros is a valid T.
    let mut out: T = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string the call only reads, and a live T it writes into.
    if unsafe { stat(c_path.as_ptr(), &mut out) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// posix_fadvise over the whole file.
pub fn fadvise(file: &File, advice: libc::c_int) -> io::Result<()> {
    fadvise_range(file, 0, 0, advice)
}

/// posix_fadvise over `len` bytes from `offset` (0 bytes: to the end).
pub fn fadvise_range(file: &File, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    let (offset, len) = (offset.min(i64::MAX as u64), len.min(i64::MAX as u64));
    // SAFETY: posix_fadvise takes no pointers; the descriptor is borrowed from `file`.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, advice) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The size of a memory page.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// Which of the pages of the file's first `len` bytes (not 0) are in the page cache: one byte a
/// page, bit 0 set when resident (mmap, then mincore).
pub fn resident_pages(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let pages = len.div_ceil(page_size());
    // SAFETY: a fresh shared read-only mapping of our own descriptor; nothing in Rust aliases it.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut resident = vec![0u8; pages];
    // SAFETY: `map` is the mapping of `len` bytes just made, and `resident` holds one byte for
    // each of its pages.
    let rc = unsafe { libc::mincore(map, len, resident.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    unsafe { libc::munmap(map, len) };
    if rc != 0 {
        return Err(err);
    }
    Ok(resident)
}

/// FIEMAP's request flag: sync the file before mapping it.
pub const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// An extent's flag: the file's last.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// An extent's flag: allocated but never written.
pub const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// Extents asked for per ioctl call; a big file takes several calls.
pub const EXTENTS_PER_CALL: usize = 256;
// From <linux/fs.h>.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;

/// One extent of a FIEMAP answer (struct fiemap_extent).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct FiemapExtent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub reserved64: [u64; 2],
    pub flags: u32,
    pub reserved: [u32; 3],
}

/// A FIEMAP request and its answer (struct fiemap with room for [`EXTENTS_PER_CALL`] extents).
#[repr(C)]
pub struct Fiemap {
    pub start: u64,
    pub length: u64,
    pub flags: u32,
    pub mapped_extents: u32,
    pub extent_count: u32,
    pub reserved: u32,
    pub extents: [FiemapExtent; EXTENTS_PER_CALL],
}

impl Default for Fiemap {
    fn default() -> Fiemap {
        Fiemap {
            start: 0,
            length: 0,
            flags: 0,
            mapped_extents: 0,
            extent_count: 0,
            reserved: 0,
            extents: [FiemapExtent::default(); EXTENTS_PER_CALL],
        }
    }
}

/// The FIEMAP ioctl: maps the extents `request` asks for into it. `extent_count` is capped at
/// the room the request has.
pub fn fiemap(file: &File, request: &mut Fiemap) -> io::Result<()> {
    request.extent_count = request.extent_count.min(EXTENTS_PER_CALL as u32);
    // SAFETY: `request` is a live struct fiemap with room for the `extent_count` extents it
    // declares, which is all the kernel writes.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, request as *mut Fiemap) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// syncfs(2): flushes every dirty page and inode of the file system holding `file`, one call
/// for a whole tree of writes.
pub fn syncfs(file: &File) -> io::Result<()> {
    // SAFETY: syncfs takes no pointers; the descriptor is borrowed from `file`.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
