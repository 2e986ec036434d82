//! This process and this machine: CPU time, clocks, names, the user, limits.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

/// The process's user and system CPU time so far (getrusage).
pub fn cpu_time() -> io::Result<(Duration, Duration)> {
    // SAFETY: rusage is plain integers, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live rusage the call writes into.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    Ok((time(usage.ru_utime), time(usage.ru_stime)))
}

/// CLOCK_REALTIME in nanoseconds.
pub fn realtime_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live timespec the call writes into.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// This machine's host name (gethostname).
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// What uname says of this machine.
pub struct Uname {
    /// The node (host) name.
    pub nodename: String,
    /// The kernel release.
    pub release: String,
}

/// uname(2): the host name and kernel release.
pub fn uname() -> io::Result<Uname> {
    // SAFETY: utsname is arrays of chars, for which all zeros is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a live utsname the call writes into.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Uname {
        nodename: c_chars(&uts.nodename),
        release: c_chars(&uts.release),
    })
}

fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The real user id of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}

/// The login name of the real user, from the passwd database; None without an entry.
pub fn user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; it is read at once, before
    // any other passwd call could overwrite it.
    unsafe {
        let entry = libc::getpwuid(libc::getuid());
        if entry.is_null() {
            return None;
        }
        let name = CStr::from_ptr((*entry).pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

/// The soft memory-lock limit (RLIMIT_MEMLOCK) in bytes; `libc::RLIM_INFINITY` when unlimited.
pub fn memlock_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live rlimit the call writes into.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Sends SIGINT to process `pid`: a child of ours stops as it would on Ctrl-C.
/// Errors: the process is gone (ESRCH) or not ours (EPERM).
pub fn interrupt_process(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers; a pid above 0 names one process, never a group.
    if pid <= 0 || unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_the_one_uname_gives() {
        assert_eq!(hostname().unwrap(), uname().unwrap().nodename);
    }
}
