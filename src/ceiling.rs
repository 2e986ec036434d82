//! What could carry a figure: the interface of the block device under a path, and the
//! negotiated speed of the network interface towards a peer, as sysfs tells them. A figure above
//! its ceiling did not come from that device or link: a cache answered.
//!
//! Where sysfs says nothing certain (virtio disks, device mapper, veth, loopback), there is no
//! ceiling, and no figure is held against one.

use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most a device or link can carry, and what it is, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub bytes_per_sec: f64,
    /// E.g. "NVMe on PCIe 8.0 GT/s x4", "SATA link 6.0 Gbps", "eth0 at 10000 Mb/s".
    pub what: String,
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:.0} MB/s", self.what, self.bytes_per_sec / 1e6)
    }
}

/// How far above its ceiling a figure may read before it is marked: clocks and the page
/// cache's last write-back round a little.
pub const TOLERANCE: f64 = 0.02;

impl Ceiling {
    /// Why `bytes_per_sec` cannot have come through this device or link, if it cannot.
    pub fn exceeded_by(&self, bytes_per_sec: f64, what_answered: &str) -> Option<String> {
        (bytes_per_sec > self.bytes_per_sec * (1.0 + TOLERANCE)).then(|| {
            format!(
                "{:.0} MB/s is above what could carry it ({self}): {what_answered}",
                bytes_per_sec / 1e6
            )
        })
    }
}

/// The interface ceiling of the block device holding `path`, where sysfs tells it.
pub fn of_path(path: &Path) -> Option<Ceiling> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    of_block_device(Path::new("/sys"), major, minor)
}

/// [`of_path`] for device `major:minor` under a sysfs mounted at `sys`.
pub fn of_block_device(sys: &Path, major: u32, minor: u32) -> Option<Ceiling> {
    let device = std::fs::canonicalize(sys.join(format!("dev/block/{major}:{minor}"))).ok()?;
    let text = device.to_string_lossy().into_owned();
    if let Some(at) = text.find("/nvme/") {
        return pcie_link(Path::new(&text[..at])).map(|(rate, link)| Ceiling {
            bytes_per_sec: rate,
            what: format!("NVMe on {link}"),
        });
    }
    let port = text
        .split('/')
        .find_map(|part| part.strip_prefix("ata")?.parse::<u32>().ok())?;
    let speed = read(&sys.join(format!("class/ata_link/link{port}/sata_spd")))?;
    let gbps: f64 = speed.split_whitespace().next()?.parse().ok()?;
    // SATA's 8b/10b encoding: 6.0 Gbps carries 600 MB/s.
    Some(Ceiling {
        bytes_per_sec: gbps * 1e9 * 0.8 / 8.0,
        what: format!("SATA link {speed}"),
    })
}

/// The bytes a PCIe device's current link carries each second, and the link in words.
fn pcie_link(device: &Path) -> Option<(f64, String)> {
    let speed = read(&device.join("current_link_speed"))?;
    let width: f64 = read(&device.join("current_link_width"))?
        .trim_start_matches('x')
        .parse()
        .ok()?;
    let gts: f64 = speed.split_whitespace().next()?.parse().ok()?;
    // Gen 1 and 2 encode 8b/10b; Gen 3 and later 128b/130b.
    let encoding = if gts <= 5.0 { 0.8 } else { 128.0 / 130.0 };
    let rate = gts * 1e9 * encoding * width / 8.0;
    Some((rate, format!("PCIe {gts:.1} GT/s x{width}")))
}

/// The negotiated speed of a physical network interface; None for virtual ones (veth, bridges,
/// loopback, which report a made-up speed or none) and for an unknown speed.
pub fn of_interface(sys: &Path, name: &str) -> Option<Ceiling> {
    let dir = sys.join("class/net").join(name);
    // Only a real device has a `device` link; veth reports 10000 Mb/s it does not have.
    if !dir.join("device").exists() {
        return None;
    }
    let mbits: f64 = read(&dir.join("speed"))?.parse().ok()?;
    (mbits > 0.0).then(|| Ceiling {
        bytes_per_sec: mbits * 1e6 / 8.0,
        what: format!("{name} at {mbits:.0} Mb/s"),
    })
}

/// The ceiling of the interface this machine would send to `peer` through.
pub fn towards(peer: IpAddr) -> Option<Ceiling> {
    of_interface(Path::new("/sys"), &interface_towards(peer)?)
}

/// The name of the interface whose address the route to `peer` leaves from.
pub fn interface_towards(peer: IpAddr) -> Option<String> {
    let any: SocketAddr = match peer {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Connecting a UDP socket sends nothing: it only asks the kernel for the route.
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect((peer, 9)).ok()?;
    let local = socket.local_addr().ok()?.ip();
    interface_with_address(local)
}

fn interface_with_address(address: IpAddr) -> Option<String> {
    let addresses = crate::sys::net::interface_addresses().ok()?;
    addresses
        .into_iter()
        .find(|(_, ip)| *ip == address)
        .map(|(name, _)| name)
}

fn read(path: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty() && !text.starts_with('<')).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree with one block device at `device` (relative to `devices/`), as `8:0`.
    fn sysfs(device: &str) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let full = sys.path().join("devices").join(device);
        std::fs::create_dir_all(&full).unwrap();
        std::fs::create_dir_all(sys.path().join("dev/block")).unwrap();
        symlink(&full, sys.path().join("dev/block/8:0")).unwrap();
        sys
    }

    fn write(sys: &Path, path: &str, text: &str) {
        let path = sys.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_nvme_disk_is_held_to_its_pcie_link() {
        let sys = sysfs("pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1");
        write(
            sys.path(),
            "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/current_link_speed",
            "8.0 GT/s PCIe\n",
        );
        write(
            sys.path(),
            "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/current_link_width",
            "4\n",
        );
        let ceiling = of_block_device(sys.path(), 8, 0).unwrap();
        // Gen 3 x4: 3.94 GB/s, the figure NVMe Gen3 x4 drives are quoted against.
        assert!((ceiling.bytes_per_sec - 3.938e9).abs() < 1e7, "{ceiling:?}");
        assert_eq!(ceiling.what, "NVMe on PCIe 8.0 GT/s x4");
    }

    #[test]
    fn a_sata_disk_is_held_to_its_link_speed() {
        let sys = sysfs("pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda");
        write(sys.path(), "class/ata_link/link3/sata_spd", "6.0 Gbps\n");
        let ceiling = of_block_device(sys.path(), 8, 0).unwrap();
        assert!((ceiling.bytes_per_sec - 600e6).abs() < 1.0, "{ceiling:?}");
        assert!(
            ceiling
                .exceeded_by(1.3e9, "a cache answered")
                .unwrap()
                .contains("SATA link 6.0 Gbps: 600 MB/s")
        );
        assert_eq!(ceiling.exceeded_by(590e6, "x"), None);
    }

    #[test]
    fn a_virtio_disk_has_no_ceiling() {
        let sys = sysfs("pci0000:00/0000:00:02.0/virtio1/block/vda");
        assert_eq!(of_block_device(sys.path(), 8, 0), None);
    }

    #[test]
    fn a_physical_interface_is_held_to_its_speed_and_a_virtual_one_is_not() {
        let sys = tempfile::tempdir().unwrap();
        write(sys.path(), "class/net/eth0/speed", "10000\n");
        std::fs::create_dir_all(sys.path().join("class/net/eth0/device")).unwrap();
        write(sys.path(), "class/net/veth0/speed", "10000\n");
        let ceiling = of_interface(sys.path(), "eth0").unwrap();
        assert!((ceiling.bytes_per_sec - 1.25e9).abs() < 1.0);
        assert_eq!(of_interface(sys.path(), "veth0"), None);
        write(sys.path(), "class/net/eth1/speed", "-1\n");
        std::fs::create_dir_all(sys.path().join("class/net/eth1/device")).unwrap();
        assert_eq!(of_interface(sys.path(), "eth1"), None, "unknown speed");
    }

    #[test]
    fn the_route_to_loopback_leaves_from_lo() {
        assert_eq!(
            interface_towards(IpAddr::from([127, 0, 0, 1])).as_deref(),
            Some("lo")
        );
    }
}
