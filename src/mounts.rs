//! What a path's file system is, from `/proc/self/mountinfo` and sysfs: its type and source; for
//! a network share (NFS, SMB/cifs, sshfs) the server, the export or share, the mount options that
//! shape its rate and the interface towards the server; for a local disk its block device.
//!
//! Reading never fails: what cannot be told is left out (`None`), and a path on no mount found
//! gets the type "unknown".

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file system a path is on. Every field is in the JSON, null where it does not apply, so
/// a share's and a disk's facts have one shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountFacts {
    /// As mountinfo names it: "nfs4", "cifs", "smb3", "fuse.sshfs", "ext4", "tmpfs", "overlay", …
    pub fs_type: String,
    pub mount_point: PathBuf,
    /// What was mounted: "198.51.100.2:/", "//198.51.100.2/share", "/dev/vda".
    pub source: String,
    /// A network file system's server: the address the kernel uses (`addr=`), else the host of
    /// the source.
    pub server: Option<String>,
    /// The NFS export path, or the SMB share name.
    pub share: Option<String>,
    /// A network file system's options that shape its rate.
    pub options: Option<ShareOptions>,
    /// The interface the route to the server leaves from.
    pub interface: Option<Interface>,
    /// A local file system's block device.
    pub device: Option<BlockDevice>,
    /// The kernel release: its NFS or SMB client is part of the figure. A host fact, so not in
    /// the JSON (the report's `host.kernel` says it once).
    #[serde(skip)]
    pub kernel: Option<String>,
}

impl MountFacts {
    /// The link towards a network share's server, where it negotiated a known speed; None for
    /// local file systems and virtual links (veth), whose speed is unknown.
    pub fn link_ceiling(&self) -> Option<crate::ceiling::Ceiling> {
        let interface = self.interface.as_ref().filter(|_| self.is_network())?;
        let mbits = interface.speed_mbit_s?;
        Some(crate::ceiling::Ceiling {
            bytes_per_sec: mbits as f64 * 1e6 / 8.0,
            what: format!("{} at {mbits} Mb/s", interface.name),
        })
    }

    /// Whether a server on the network holds the files (NFS or SMB): its own cache then sits
    /// beyond this machine's reach.
    pub fn is_network(&self) -> bool {
        NETWORK_TYPES.contains(&self.fs_type.as_str())
    }

    /// What in a share's mount options commonly holds its rate or its truth back, one hint a
    /// line; none for a local file system. A fast link is one of 10 Gb/s or more.
    pub fn hints(&self) -> Vec<String> {
        let Some(options) = &self.options else {
            return Vec::new();
        };
        let mut hints = Vec::new();
        let fast = self
            .interface
            .as_ref()
            .and_then(|i| i.speed_mbit_s)
            .is_some_and(|speed| speed >= 10_000);
        let nfs = self.fs_type.starts_with("nfs");
        let smb = matches!(self.fs_type.as_str(), "cifs" | "smb3");
        if nfs && fast && options.nconnect.unwrap_or(1) == 1 {
            hints.push("nconnect=1 on a link of 10 Gb/s or more: one TCP connection carries it all; mount with nconnect=4 (or more) to spread it".into());
        }
        if smb && fast && options.multichannel != Some(true) {
            hints.push("SMB without multichannel on a link of 10 Gb/s or more: one connection carries it all; mount with multichannel,max_channels=4".into());
        }
        for (name, size) in [("rsize", options.rsize), ("wsize", options.wsize)] {
            if let Some(size) = size.filter(|&size| size < 1 << 20) {
                hints.push(format!(
                    "{name}={size}: each request moves less than 1 MiB; mount with {name}=1048576 or more if the server allows"
                ));
            }
        }
        if smb && options.cache.as_deref() == Some("loose") {
            hints.push("cache=loose: the client may answer reads from data another client changed, and holds writes past close; cache=strict (the default) keeps the figures and the files honest".into());
        }
        let major = options
            .vers
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        if nfs && matches!(options.vers.as_deref(), Some("3" | "4" | "4.0")) {
            hints.push(format!(
                "NFS vers={}: 4.1 and later add sessions (and 4.2 server-side copy); mount with vers=4.2 if the server has it",
                options.vers.as_deref().unwrap_or_default()
            ));
        }
        if smb && major.is_some_and(|major| major < 3) {
            hints.push(format!(
                "SMB vers={}: SMB 3 adds multichannel and faster signing and encryption; mount with vers=3.1.1 if the server has it",
                options.vers.as_deref().unwrap_or_default()
            ));
        }
        hints
    }
}

/// The options of a network mount that shape what it can carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShareOptions {
    /// Protocol version (`vers=`): "4.2", "3.1.1".
    pub vers: Option<String>,
    /// NFS: TCP connections to the server (the kernel shows it only above 1).
    pub nconnect: Option<u32>,
    pub rsize: Option<u64>,
    pub wsize: Option<u64>,
    /// CIFS client caching: "strict", "none", "loose", "ro", "rw".
    pub cache: Option<String>,
    /// CIFS: SMB3 multichannel on.
    pub multichannel: Option<bool>,
    pub max_channels: Option<u32>,
    /// true for a `hard` mount (retries for ever), false for `soft` (fails after its retries).
    pub hard: Option<bool>,
    /// Mounted `sync`: every write goes to the server before it returns.
    #[serde(default)]
    pub sync: bool,
}

/// A network interface, as sysfs tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mtu: Option<u32>,
    /// Negotiated speed in megabits per second; None where unknown (virtual links: veth,
    /// bridges, loopback).
    pub speed_mbit_s: Option<u64>,
}

/// The block device under a local file system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// The kernel's name: "vda", "nvme0n1", "sda" (the whole disk, not the partition).
    pub name: String,
    pub rotational: Option<bool>,
    /// How it is attached: "nvme", "sata", "scsi", "virtio", "usb", "mmc", "loop",
    /// "device-mapper", "md", "zram", or "unknown".
    pub transport: String,
    pub model: Option<String>,
}

/// File-system types whose bytes cross a network.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "ceph",
    "glusterfs",
    "9p",
];

/// The longest a host name of a mount source may take to resolve.
const RESOLVE_LIMIT: Duration = Duration::from_secs(2);

/// The facts of the file system `path` is on (or would be on: a path that does not exist yet
/// is taken at its nearest existing ancestor).
pub fn facts(path: &Path) -> MountFacts {
    let kernel = crate::sys::host::uname().ok().map(|uname| uname.release);
    let entries = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default();
    let resolved = existing_ancestor(path);
    let Some(entry) = mount_of(&entries, &resolved) else {
        return MountFacts {
            fs_type: "unknown".into(),
            kernel,
            ..MountFacts::default()
        };
    };
    let mut facts = facts_of_entry(entry);
    facts.kernel = kernel;
    if let Some(server) = &facts.server {
        facts.interface = address_of(server)
            .and_then(crate::ceiling::interface_towards)
            .map(|name| interface(Path::new("/sys"), &name));
    } else if entry.major != 0 {
        facts.device = block_device(Path::new("/sys"), entry.major, entry.minor);
    }
    facts
}

/// One line of mountinfo, the fields this module reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    /// The directory of the file system mounted here (not "/" for a bind mount of a subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// The lines of `/proc/self/mountinfo` (proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let mut rest = after.splitn(3, ' ');
    Some(MountEntry {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(unescape(fields.get(3)?)),
        mount_point: PathBuf::from(unescape(fields.get(4)?)),
        mount_options: fields.get(5)?.to_string(),
        fs_type: unescape(rest.next()?),
        source: unescape(rest.next()?),
        super_options: rest.next().unwrap_or("").to_string(),
    })
}

/// mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (absolute, links resolved): the longest mount point that is a
/// prefix of it, the last mounted where one is mounted over another.
pub fn mount_of<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| path.starts_with(&entry.mount_point))
        .max_by_key(|(at, entry)| (entry.mount_point.components().count(), *at))
        .map(|(_, entry)| entry)
}

/// `path` made absolute with its links resolved, at its nearest existing ancestor (a file about
/// to be written is on its directory's file system).
pub fn existing_ancestor(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .ancestors()
        .find_map(|dir| std::fs::canonicalize(dir).ok())
        .unwrap_or(absolute)
}

/// What one mountinfo line says, before sysfs and routes are asked.
pub fn facts_of_entry(entry: &MountEntry) -> MountFacts {
    let mut facts = MountFacts {
        fs_type: entry.fs_type.clone(),
        mount_point: entry.mount_point.clone(),
        source: entry.source.clone(),
        ..MountFacts::default()
    };
    if !NETWORK_TYPES.contains(&entry.fs_type.as_str()) {
        return facts;
    }
    let (host, share) = split_source(&entry.fs_type, &entry.source);
    let options = format!("{},{}", entry.mount_options, entry.super_options);
    let addr = option_value(&options, "addr");
    facts.server = addr.map(str::to_string).or(host);
    facts.share = share;
    facts.options = Some(share_options(&entry.fs_type, &options));
    facts
}

/// The host and the export (NFS, sshfs: `HOST:/path`, `[v6]:/path`, `user@HOST:path`) or share
/// name (SMB: `//HOST/share/sub`) of a network mount's source.
pub fn split_source(fs_type: &str, source: &str) -> (Option<String>, Option<String>) {
    if let Some(unc) = source
        .strip_prefix("//")
        .or_else(|| source.strip_prefix(r"\\"))
    {
        let mut parts = unc.splitn(2, ['/', '\\']);
        let host = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
        let share = parts
            .next()
            .and_then(|rest| rest.split(['/', '\\']).next())
            .map(str::to_string);
        return (host, share);
    }
    let source = match fs_type {
        "fuse.sshfs" => source.rsplit_once('@').map_or(source, |(_, rest)| rest),
        _ => source,
    };
    if let Some(bracketed) = source.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']').unwrap_or((bracketed, ""));
        let export = rest.strip_prefix(':').unwrap_or(rest);
        return (Some(host.to_string()), Some(export.to_string()));
    }
    match source.split_once(':') {
        Some((host, export)) => (Some(host.to_string()), Some(export.to_string())),
        None => (None, None),
    }
}

/// The value of `name=` in a comma-separated option list, the last one given.
fn option_value<'a>(options: &'a str, name: &str) -> Option<&'a str> {
    options
        .split(',')
        .filter_map(|option| option.split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .next_back()
}

fn has_flag(options: &str, name: &str) -> bool {
    options.split(',').any(|option| option == name)
}

/// The rate-shaping options of a network mount, from its mount and super options together.
pub fn share_options(fs_type: &str, options: &str) -> ShareOptions {
    let number = |name| option_value(options, name).and_then(|v| v.parse::<u64>().ok());
    let count = |name| number(name).and_then(|n| u32::try_from(n).ok());
    let cifs = matches!(fs_type, "cifs" | "smb3" | "smbfs");
    let nfs = fs_type.starts_with("nfs");
    let last_of = |a: &str, b: &str| {
        options
            .split(',')
            .rfind(|option| *option == a || *option == b)
            .map(|option| option == a)
    };
    ShareOptions {
        vers: option_value(options, "vers").map(str::to_string),
        // NFS shows nconnect only when it is above one connection.
        nconnect: count("nconnect").or(nfs.then_some(1)),
        rsize: number("rsize"),
        wsize: number("wsize"),
        cache: option_value(options, "cache").map(str::to_string),
        multichannel: cifs.then(|| has_flag(options, "multichannel")),
        max_channels: count("max_channels"),
        hard: last_of("hard", "soft"),
        sync: has_flag(options, "sync"),
    }
}

/// An address to route to: `server` itself, or its first address, resolved within
/// [`RESOLVE_LIMIT`].
fn address_of(server: &str) -> Option<IpAddr> {
    if let Ok(ip) = server.parse() {
        return Some(ip);
    }
    let (sender, receiver) = mpsc::channel();
    let host = server.to_string();
    // A resolver that hangs is left behind: the figure does not wait on DNS.
    std::thread::spawn(move || {
        let first = (host.as_str(), 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        let _ = sender.send(first.map(|addr| addr.ip()));
    });
    receiver.recv_timeout(RESOLVE_LIMIT).ok().flatten()
}

/// Interface `name` under a sysfs mounted at `sys`: its MTU, and its speed where the link
/// negotiated one (the same rule as its ceiling).
pub fn interface(sys: &Path, name: &str) -> Interface {
    let mtu = read(&sys.join("class/net").join(name).join("mtu")).and_then(|m| m.parse().ok());
    let speed = crate::ceiling::of_interface(sys, name)
        .map(|ceiling| (ceiling.bytes_per_sec * 8.0 / 1e6).round() as u64);
    Interface {
        name: name.to_string(),
        mtu,
        speed_mbit_s: speed,
    }
}

/// Block device `major:minor` under a sysfs mounted at `sys`, taken at its whole disk.
pub fn block_device(sys: &Path, major: u32, minor: u32) -> Option<BlockDevice> {
    let mut dir = std::fs::canonicalize(sys.join(format!("dev/block/{major}:{minor}"))).ok()?;
    // A partition's facts are its disk's, one directory up.
    if dir.join("partition").exists() {
        dir = dir.parent()?.to_path_buf();
    }
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let text = dir.to_string_lossy();
    let transport = if text.contains("/nvme/") {
        "nvme"
    } else if text.contains("/virtio") {
        "virtio"
    } else if text.contains("/usb") {
        "usb"
    } else if text.contains("/ata") {
        "sata"
    } else if text.contains("/mmc") {
        "mmc"
    } else if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("dm-") {
        "device-mapper"
    } else if name.starts_with("md") {
        "md"
    } else if name.starts_with("zram") {
        "zram"
    } else if text.contains("/host") && text.contains("/target") {
        "scsi"
    } else {
        "unknown"
    };
    Some(BlockDevice {
        rotational: read(&dir.join("queue/rotational")).map(|r| r == "1"),
        model: read(&dir.join("device/model")),
        transport: transport.to_string(),
        name,
    })
}

fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Debian 6.1's kernel shows the lab VM's shares (scripts/lab-vm.sh --nas).
    const CIFS: &str = "54 28 0:32 / /mnt/nas rw,relatime - cifs //198.51.100.2/share rw,vers=3.1.1,sec=none,cache=none,uid=0,noforceuid,gid=0,noforcegid,addr=198.51.100.2,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1,closetimeo=1";
    const NFS4: &str = "98 29 0:51 / /mnt/nas rw,relatime - nfs4 198.51.100.2:/ rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,nconnect=4,timeo=600,retrans=2,sec=sys,clientaddr=198.51.100.1,local_lock=none,addr=198.51.100.2";
    const EXT4_VDA: &str =
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resuid=65534,resgid=65534";
    const EXT4_NVME: &str =
        "30 27 259:2 / /data rw,noatime shared:5 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro";
    const SPACE: &str =
        r"40 27 8:17 / /media/My\040Disk rw,nosuid,nodev shared:9 - vfat /dev/sdb1 rw,fmask=0022";
    const SSHFS: &str = "41 27 0:60 / /mnt/far rw,nosuid,nodev,relatime shared:10 - fuse.sshfs me@files.example.org:/srv/data rw,user_id=0,group_id=0";

    fn facts_on(line: &str, speed_mbit_s: Option<u64>) -> MountFacts {
        let mut facts = facts_of_entry(&parse_mountinfo(line)[0]);
        facts.interface = Some(Interface {
            name: "eth0".into(),
            mtu: Some(1500),
            speed_mbit_s,
        });
        facts
    }

    #[test]
    fn a_well_mounted_share_or_a_local_disk_gets_no_hint() {
        assert_eq!(facts_on(NFS4, Some(25_000)).hints(), Vec::<String>::new());
        assert_eq!(facts_on(CIFS, Some(1_000)).hints(), Vec::<String>::new());
        assert_eq!(facts_on(EXT4_VDA, None).hints(), Vec::<String>::new());
    }

    #[test]
    fn hints_name_what_holds_a_share_back() {
        let one_connection = NFS4.replace("nconnect=4,", "").replace("1048576", "262144");
        let hints = facts_on(&one_connection, Some(25_000)).hints();
        assert!(
            hints[0].starts_with("nconnect=1 on a link of 10 Gb/s"),
            "{hints:?}"
        );
        assert!(hints[1].starts_with("rsize=262144") && hints[2].starts_with("wsize=262144"));
        // On a slow or unknown link one connection is not the limit.
        assert_eq!(facts_on(&one_connection, None).hints().len(), 2);
        let loose = CIFS
            .replace("cache=none", "cache=loose")
            .replace("vers=3.1.1", "vers=2.1");
        let hints = facts_on(&loose, Some(10_000)).hints();
        assert!(
            hints[0].starts_with("SMB without multichannel"),
            "{hints:?}"
        );
        assert!(hints[1].starts_with("cache=loose") && hints[2].starts_with("SMB vers=2.1"));
        let v3 = NFS4.replace("nfs4", "nfs").replace("vers=4.2", "vers=3");
        assert!(facts_on(&v3, None).hints()[0].starts_with("NFS vers=3: "));
    }
    const TMPFS: &str = "25 27 0:23 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=8148376k";
    const OVERLAY: &str = "500 400 0:70 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w";
    const BIND: &str =
        "42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw,discard";

    fn entries() -> Vec<MountEntry> {
        parse_mountinfo(
            &[
                EXT4_VDA, TMPFS, CIFS, EXT4_NVME, SPACE, SSHFS, OVERLAY, BIND,
            ]
            .join("\n"),
        )
    }

    fn on(path: &str) -> MountFacts {
        let entries = entries();
        facts_of_entry(mount_of(&entries, Path::new(path)).unwrap())
    }

    #[test]
    fn a_cifs_share_reads_its_server_share_and_options() {
        let facts = facts_of_entry(&parse_line(CIFS).unwrap());
        assert_eq!(facts.fs_type, "cifs");
        assert_eq!(facts.server.as_deref(), Some("198.51.100.2"));
        assert_eq!(facts.share.as_deref(), Some("share"));
        let options = facts.options.unwrap();
        assert_eq!(options.vers.as_deref(), Some("3.1.1"));
        assert_eq!(options.cache.as_deref(), Some("none"));
        assert_eq!(options.rsize, Some(4 << 20));
        assert_eq!(options.multichannel, Some(false));
        assert_eq!(options.hard, Some(false), "soft");
        assert_eq!(options.nconnect, None);
        assert!(!options.sync);
    }

    #[test]
    fn an_nfs4_mount_reads_its_export_version_and_nconnect() {
        let facts = facts_of_entry(&parse_line(NFS4).unwrap());
        assert_eq!(facts.fs_type, "nfs4");
        assert_eq!(facts.source, "198.51.100.2:/");
        assert_eq!(facts.server.as_deref(), Some("198.51.100.2"));
        assert_eq!(facts.share.as_deref(), Some("/"));
        let options = facts.options.unwrap();
        assert_eq!(options.vers.as_deref(), Some("4.2"));
        assert_eq!(options.nconnect, Some(4));
        assert_eq!(
            (options.rsize, options.wsize),
            (Some(1 << 20), Some(1 << 20))
        );
        assert_eq!(options.hard, Some(true));
        assert_eq!(options.multichannel, None);
    }

    #[test]
    fn an_nfs_mount_without_nconnect_has_one_connection_and_sync_is_read() {
        let line = "99 29 0:52 / /mnt/n rw,sync,relatime - nfs 192.0.2.9:/export/a rw,vers=3,rsize=65536,wsize=65536,soft,addr=192.0.2.9";
        let options = facts_of_entry(&parse_line(line).unwrap()).options.unwrap();
        assert_eq!(options.nconnect, Some(1));
        assert!(options.sync);
        assert_eq!(options.vers.as_deref(), Some("3"));
    }

    #[test]
    fn sources_name_their_server_and_share() {
        assert_eq!(
            split_source("nfs4", "[2001:db8::2]:/export"),
            (Some("2001:db8::2".into()), Some("/export".into()))
        );
        assert_eq!(
            split_source("cifs", "//nas.example.org/media/films"),
            (Some("nas.example.org".into()), Some("media".into()))
        );
        assert_eq!(
            split_source("fuse.sshfs", "me@files.example.org:/srv/data"),
            (Some("files.example.org".into()), Some("/srv/data".into()))
        );
        assert_eq!(split_source("ext4", "/dev/vda"), (None, None));
    }

    #[test]
    fn the_longest_mount_point_holds_a_path() {
        assert_eq!(on("/").fs_type, "ext4");
        assert_eq!(on("/home/me/file").source, "/dev/vda");
        assert_eq!(on("/tmp/x").fs_type, "tmpfs");
        assert_eq!(on("/data/big.bin").source, "/dev/nvme0n1p2");
        assert_eq!(on("/mnt/nas/dir/file").fs_type, "cifs");
        assert_eq!(
            on("/var/lib/docker/overlay2/abc/merged/etc").fs_type,
            "overlay"
        );
        assert_eq!(on("/run/netns/lab").mount_point, Path::new("/run/netns"));
        // A prefix of the name is not a parent directory.
        assert_eq!(on("/tmpfile").fs_type, "ext4");
    }

    #[test]
    fn an_escaped_mount_point_with_a_space_is_matched() {
        let facts = on("/media/My Disk/photos");
        assert_eq!(facts.fs_type, "vfat");
        assert_eq!(facts.mount_point, Path::new("/media/My Disk"));
        assert_eq!(unescape(r"a\134b\011c\040"), "a\\b\tc ");
        assert_eq!(unescape(r"no\escape\04"), r"no\escape\04");
    }

    #[test]
    fn the_last_of_two_mounts_on_one_point_is_the_one_seen() {
        let over = "600 25 0:80 / /tmp rw - ext4 /dev/sdc1 rw";
        let entries = parse_mountinfo(&[EXT4_VDA, TMPFS, over].join("\n"));
        assert_eq!(
            mount_of(&entries, Path::new("/tmp/a")).unwrap().fs_type,
            "ext4"
        );
    }

    #[test]
    fn sshfs_is_a_network_mount_and_tmpfs_and_overlay_are_not() {
        let sshfs = on("/mnt/far/x");
        assert_eq!(sshfs.server.as_deref(), Some("files.example.org"));
        assert_eq!(sshfs.share.as_deref(), Some("/srv/data"));
        for local in ["/tmp", "/var/lib/docker/overlay2/abc/merged"] {
            let facts = on(local);
            assert_eq!((facts.server, facts.options), (None, None), "{local}");
        }
    }

    #[test]
    fn a_missing_file_is_on_its_nearest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/here.bin");
        assert_eq!(
            existing_ancestor(&missing),
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[test]
    fn this_machines_root_is_a_local_file_system() {
        let facts = facts(Path::new("/no/such/dir/file"));
        assert_eq!(facts.mount_point, Path::new("/"));
        assert!(facts.server.is_none(), "{facts:?}");
        assert!(facts.kernel.is_some());
    }

    /// A sysfs tree with block device `8:0` at `devices/<device>`.
    fn sysfs(device: &str) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let full = sys.path().join("devices").join(device);
        std::fs::create_dir_all(&full).unwrap();
        std::fs::create_dir_all(sys.path().join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&full, sys.path().join("dev/block/8:0")).unwrap();
        sys
    }

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn block_devices_say_how_they_are_attached() {
        let sys = sysfs("pci0000:00/0000:00:02.0/virtio1/block/vda");
        let vda = sys
            .path()
            .join("devices/pci0000:00/0000:00:02.0/virtio1/block/vda");
        write(vda.join("queue/rotational"), "0\n");
        let device = block_device(sys.path(), 8, 0).unwrap();
        assert_eq!(
            (
                device.name.as_str(),
                device.transport.as_str(),
                device.rotational
            ),
            ("vda", "virtio", Some(false))
        );

        let disk = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1";
        let sys = sysfs(&format!("{disk}/nvme0n1p2"));
        let full = sys.path().join("devices").join(disk);
        write(full.join("nvme0n1p2/partition"), "2\n");
        write(full.join("queue/rotational"), "0\n");
        write(full.join("device/model"), "Samsung SSD 980 PRO 1TB  \n");
        let device = block_device(sys.path(), 8, 0).unwrap();
        assert_eq!(device.name, "nvme0n1", "the partition's disk");
        assert_eq!(device.transport, "nvme");
        assert_eq!(device.model.as_deref(), Some("Samsung SSD 980 PRO 1TB"));

        let sys = sysfs("pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda");
        let sda = sys
            .path()
            .join("devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda");
        write(sda.join("queue/rotational"), "1\n");
        let device = block_device(sys.path(), 8, 0).unwrap();
        assert_eq!(
            (device.transport.as_str(), device.rotational),
            ("sata", Some(true))
        );
    }

    #[test]
    fn a_virtual_interface_has_an_mtu_and_no_speed() {
        let sys = tempfile::tempdir().unwrap();
        write(sys.path().join("class/net/lab-nas/mtu"), "1500\n");
        write(sys.path().join("class/net/lab-nas/speed"), "10000\n");
        let veth = interface(sys.path(), "lab-nas");
        assert_eq!((veth.mtu, veth.speed_mbit_s), (Some(1500), None));
        write(sys.path().join("class/net/eth0/speed"), "25000\n");
        std::fs::create_dir_all(sys.path().join("class/net/eth0/device")).unwrap();
        assert_eq!(interface(sys.path(), "eth0").speed_mbit_s, Some(25000));
    }

    #[test]
    fn facts_survive_json_without_the_kernel() {
        let mut facts = facts_of_entry(&parse_line(NFS4).unwrap());
        facts.kernel = Some("6.1.0".into());
        let json = serde_json::to_string(&facts).unwrap();
        assert!(!json.contains("6.1.0"), "{json}");
        let back: MountFacts = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            MountFacts {
                kernel: None,
                ..facts
            }
        );
    }
}
