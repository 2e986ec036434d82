//! UDP datagrams on the wire: a 32-byte header in front of random bytes, and batches of them
//! moved with one system call each way (sendmmsg, recvmmsg), received with kernel timestamps.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use crate::sys::socket::{empty_storage, from_storage, to_storage};

/// Bytes of [`Header`] at the front of every datagram: the smallest `-l`.
pub const HEADER_LEN: usize = 32;
/// The largest UDP payload over IPv4 (65535 less the IP and UDP headers): the largest `-l`.
pub const MAX_LEN: usize = 65507;
/// Datagrams per system call.
pub const BATCH: usize = 64;

const MAGIC: [u8; 4] = *b"xfbu";
/// Room for one SCM_TIMESTAMPNS message.
const CONTROL_LEN: usize = 64;

/// What a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counted datagram of the test.
    Data = 0,
    /// Sent during the omitted start: received and dropped uncounted.
    Omitted = 1,
    /// The client's first datagram, so the server learns its address.
    Hello = 2,
    /// The server's answer to [`Kind::Hello`]: both ways are open.
    Welcome = 3,
    /// The sender is done; `seq` is how many counted datagrams it sent.
    End = 4,
}

/// The front of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// The session's secret, so datagrams of other senders are told apart.
    pub key: u64,
    /// 0 for the first datagram of its kind.
    pub seq: u64,
    /// CLOCK_REALTIME at sending, in nanoseconds: transit times for the jitter.
    pub sent_ns: u64,
}

impl Header {
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4..8].copy_from_slice(&(self.kind as u32).to_le_bytes());
        buf[8..16].copy_from_slice(&self.key.to_le_bytes());
        buf[16..24].copy_from_slice(&self.seq.to_le_bytes());
        buf[24..32].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// None: not one of ours (too short, another magic, an unknown kind).
    pub fn read(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN || buf[0..4] != MAGIC {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        let kind = match u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) {
            0 => Kind::Data,
            1 => Kind::Omitted,
            2 => Kind::Hello,
            3 => Kind::Welcome,
            4 => Kind::End,
            _ => return None,
        };
        Some(Header {
            kind,
            key: word(8),
            seq: word(16),
            sent_ns: word(24),
        })
    }
}

/// The largest payload that crosses a link of `mtu` bytes unfragmented (1472 at 1500, 8972 at
/// 9000 over IPv4, as `ping -M do -s` finds), within the range `-l` accepts.
pub fn default_len(mtu: u32, ipv6: bool) -> usize {
    let headers = if ipv6 { 40 + 8 } else { 20 + 8 };
    (mtu as usize)
        .saturating_sub(headers)
        .clamp(HEADER_LEN, MAX_LEN)
}

/// CLOCK_REALTIME in nanoseconds: the clock the kernel stamps received datagrams with.
pub use crate::sys::host::realtime_ns;

/// Asks the kernel to stamp each received datagram with its arrival time (SO_TIMESTAMPNS),
/// so jitter does not depend on when this process got around to reading.
pub fn stamp_arrivals(fd: RawFd) {
    crate::measure::set_socket_option(fd, libc::SO_TIMESTAMPNS, 1);
}

/// [`BATCH`] datagram buffers of `len` bytes, with what one sendmmsg or recvmmsg needs.
pub struct Batch {
    len: usize,
    data: Vec<u8>,
    lens: [usize; BATCH],
    stamps: [Option<u64>; BATCH],
    sources: Vec<libc::sockaddr_storage>,
    controls: Vec<[u8; CONTROL_LEN]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the batch's own heap buffers, which move with it,
// and are refreshed before each call; nothing else holds them.
unsafe impl Send for Batch {}

impl Batch {
    /// Buffers of `len` bytes, filled with random bytes (headers are written over them).
    pub fn new(len: usize) -> Batch {
        let mut data = vec![0u8; len * BATCH];
        crate::payload::RandomFill::new().fill(&mut data);
        Batch {
            len,
            data,
            lens: [0; BATCH],
            stamps: [None; BATCH],
            sources: vec![empty_storage(); BATCH],
            controls: vec![[0; CONTROL_LEN]; BATCH],
            // SAFETY: an iovec is a pointer and a length: null and zero are valid values.
            iovecs: vec![unsafe { zeroed() }; BATCH],
            // SAFETY: an mmsghdr is pointers and integers: null and zero are valid values.
            headers: vec![unsafe { zeroed() }; BATCH],
        }
    }

    /// Buffer `index`, to write a header into before sending.
    pub fn slot(&mut self, index: usize) -> &mut [u8] {
        &mut self.data[index * self.len..(index + 1) * self.len]
    }

    /// Received datagram `index`: its bytes and its arrival time (CLOCK_REALTIME ns).
    pub fn received(&self, index: usize) -> (&[u8], Option<u64>) {
        let start = index * self.len;
        (
            &self.data[start..start + self.lens[index]],
            self.stamps[index],
        )
    }

    /// Where received datagram `index` came from.
    pub fn source(&self, index: usize) -> Option<SocketAddr> {
        from_storage(&self.sources[index])
    }

    /// Sends the first `count` buffers, to `to` (None: the socket's connected peer). Returns
    /// how many left; fewer than `count` when the socket's buffer filled.
    pub fn send(&mut self, fd: RawFd, count: usize, to: Option<SocketAddr>) -> io::Result<usize> {
        let count = count.min(BATCH);
        let (name, name_len) = match to {
            Some(addr) => to_storage(addr),
            None => (empty_storage(), 0),
        };
        for i in 0..count {
            self.iovecs[i] = libc::iovec {
                iov_base: self.data[i * self.len..].as_mut_ptr().cast(),
                iov_len: self.len,
            };
            self.sources[i] = name;
            let header = &mut self.headers[i].msg_hdr;
            // SAFETY: a msghdr is pointers and integers: null and zero are valid values.
            *header = unsafe { zeroed() };
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            if name_len > 0 {
                header.msg_name = (&mut self.sources[i] as *mut libc::sockaddr_storage).cast();
                header.msg_namelen = name_len;
            }
        }
        // SAFETY: each of the `count` headers points at its own iovec, buffer of `len` bytes and
        // address in this batch, all alive and unmoved for the call.
        let sent =
            unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), count as libc::c_uint, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    /// Receives up to [`BATCH`] datagrams: waits for the first (up to the socket's receive
    /// timeout), then takes what is already there. `wait` false: takes only what is there.
    pub fn receive(&mut self, fd: RawFd, wait: bool) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.data[i * self.len..].as_mut_ptr().cast(),
                iov_len: self.len,
            };
            let header = &mut self.headers[i].msg_hdr;
            // SAFETY: a msghdr is pointers and integers: null and zero are valid values.
            *header = unsafe { zeroed() };
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_name = (&mut self.sources[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_control = self.controls[i].as_mut_ptr().cast();
            header.msg_controllen = CONTROL_LEN;
        }
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // SAFETY: each header points at its own iovec, buffer of `len` bytes, address storage
        // and control buffer of CONTROL_LEN bytes in this batch, all alive and unmoved for the call.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            // A datagram longer than the buffer is cut (MSG_TRUNC): counted at the buffer's length.
            self.lens[i] = (self.headers[i].msg_len as usize).min(self.len);
            // SAFETY: header `i` was just filled by recvmmsg, its control buffer is the batch's.
            self.stamps[i] = unsafe { arrival(&self.headers[i].msg_hdr) };
        }
        Ok(got)
    }
}

/// The SCM_TIMESTAMPNS of a received message, in nanoseconds.
///
/// # Safety
/// `header`'s control pointer and length must describe a live buffer of control messages.
unsafe fn arrival(header: &libc::msghdr) -> Option<u64> {
    // SAFETY: the caller vouches for the control buffer; CMSG_FIRSTHDR and CMSG_NXTHDR stay
    // inside it, and the timestamp is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let stamp: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                return Some(stamp.tv_sec as u64 * 1_000_000_000 + stamp.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// The same host and port, whether the kernel wrote the address as IPv4 or IPv4-mapped IPv6.
pub fn same_peer(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written() {
        let header = Header {
            kind: Kind::End,
            key: 0x0123_4567_89ab_cdef,
            seq: 42,
            sent_ns: 1_700_000_000_123_456_789,
        };
        let mut buf = [0u8; HEADER_LEN];
        header.write(&mut buf);
        assert_eq!(Header::read(&buf), Some(header));
        assert_eq!(Header::read(&buf[..HEADER_LEN - 1]), None);
        buf[0] = b'X';
        assert_eq!(Header::read(&buf), None);
    }

    #[test]
    fn the_default_length_fits_the_mtu() {
        assert_eq!(default_len(1500, false), 1472);
        assert_eq!(default_len(9000, false), 8972);
        assert_eq!(default_len(1500, true), 1452);
        assert_eq!(default_len(65536, false), MAX_LEN);
        assert_eq!(default_len(40, false), HEADER_LEN);
    }

    #[test]
    fn a_batch_crosses_loopback_with_its_headers_and_stamps() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        stamp_arrivals(receiver.as_raw_fd());
        let mut out = Batch::new(1000);
        for seq in 0..5 {
            Header {
                kind: Kind::Data,
                key: 7,
                seq,
                sent_ns: realtime_ns(),
            }
            .write(out.slot(seq as usize));
        }
        let expected: Vec<Vec<u8>> = (0..5).map(|i| out.slot(i).to_vec()).collect();
        let to = receiver.local_addr().unwrap();
        assert_eq!(out.send(sender.as_raw_fd(), 5, Some(to)).unwrap(), 5);
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut back = Batch::new(1000);
        let mut seqs = Vec::new();
        while seqs.len() < 5 {
            let got = back.receive(receiver.as_raw_fd(), true).unwrap();
            for i in 0..got {
                let (bytes, stamp) = back.received(i);
                assert_eq!(bytes.len(), 1000);
                let seq = Header::read(bytes).unwrap().seq;
                assert_eq!(bytes, &expected[seq as usize][..]);
                assert!(stamp.is_some());
                assert!(same_peer(
                    back.source(i).unwrap(),
                    sender.local_addr().unwrap()
                ));
                seqs.push(seq);
            }
        }
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    }
}
