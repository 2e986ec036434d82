//! The verbs xferbench uses, on top of `sideway`: open a device, pick a GID, register buffers,
//! bring an RC queue pair up from the peer's endpoint, post writes and sends, poll completions.
//! Everything above this file speaks in slots and completions, not in ibverbs structures.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid, GidType};
use sideway::ibverbs::completion::{
    BasicCompletionQueue, GenericCompletionQueue, WorkCompletionOperationType, WorkCompletionStatus,
};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::{DeviceContext, LinkLayer, Mtu, PortState};
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    ExtendedQueuePair, PostSendGuard, QueuePair, QueuePairAttribute, QueuePairState, SetInlineData,
    SetScatterGatherEntry, WorkRequestFlags,
};

use super::{NO_DEVICE, RdmaOptions};
use crate::control::{RdmaEndpoint, RdmaSlot};

/// The port every device is used on (perftest's default `-i 1`).
const PORT: u8 = 1;
/// Bytes of inline data a send may carry (latency probes, credits).
pub const MAX_INLINE: u32 = 64;
/// Local ACK timeout: 4.096 µs × 2^14 ≈ 67 ms per try, 7 tries: a dead peer fails a write in
/// about half a second rather than hanging.
const ACK_TIMEOUT: u8 = 14;
const RETRY_COUNT: u8 = 7;
/// 7 means "retry for ever" on receiver-not-ready; credits make RNR impossible anyway.
const RNR_RETRY: u8 = 7;

/// An open RDMA device, its port, the GID it speaks from and a protection domain.
pub struct Device {
    pub name: String,
    context: Arc<DeviceContext>,
    pd: Arc<ProtectionDomain>,
    gid_index: u8,
    gid: Gid,
    gid_type: Option<GidType>,
    lid: u16,
    ethernet: bool,
    mtu: Mtu,
}

impl Device {
    /// Opens the device asked for (or the first), checks its port is up and chooses a GID:
    /// the one asked for, else a RoCE v2 GID with an IPv4 address, else any RoCE v2, else the first.
    pub fn open(options: &RdmaOptions) -> Result<Device> {
        let list = DeviceList::new().map_err(|_| anyhow!(NO_DEVICE))?;
        let names: Vec<String> = list.iter().map(|d| d.name()).collect();
        if names.is_empty() {
            bail!(NO_DEVICE);
        }
        let device = match &options.device {
            Some(wanted) => list.iter().find(|d| &d.name() == wanted).ok_or_else(|| {
                anyhow!(
                    "no RDMA device named {wanted}: this machine has {} (see `ibv_devices`)",
                    names.join(", ")
                )
            })?,
            None => list.iter().next().expect("the list is not empty"),
        };
        let name = device.name();
        let context = device
            .open()
            .map_err(|err| anyhow!("cannot open RDMA device {name}: {err}"))?;
        let port = context
            .query_port(PORT)
            .map_err(|err| anyhow!("cannot query port {PORT} of {name}: {err}"))?;
        if port.port_state() != PortState::Active {
            bail!(
                "port {PORT} of {name} is not active ({:?}): bring its link up (see `ibv_devinfo -d {name}`)",
                port.port_state()
            );
        }
        let ethernet = port.link_layer() == LinkLayer::Ethernet;
        let (gid_index, gid, gid_type) = choose_gid(&context, &name, options.gid_index, ethernet)?;
        let pd = context
            .alloc_pd()
            .map_err(|err| anyhow!("cannot allocate a protection domain on {name}: {err}"))?;
        Ok(Device {
            name,
            pd,
            gid_index,
            gid,
            gid_type,
            lid: port.lid(),
            ethernet,
            mtu: port.active_mtu(),
            context,
        })
    }

    /// What the figures were measured on, for the report.
    pub fn describe(&self) -> String {
        let kind = match self.gid_type {
            Some(GidType::RoceV2) => "RoCE v2",
            Some(GidType::RoceV1) => "RoCE v1",
            Some(GidType::InfiniBand) | None if !self.ethernet => "InfiniBand",
            _ => "GID",
        };
        format!(
            "{} port {PORT}, GID index {} ({kind} {})",
            self.name,
            self.gid_index,
            std::net::Ipv6Addr::from(self.gid)
        )
    }

    /// Registers `len` bytes at `addr` for local use, and for the peer's writes when `remote`.
    ///
    /// # Safety
    /// The memory must stay allocated, and not move, while the region and any work request on it live.
    pub unsafe fn register(&self, addr: *mut u8, len: usize, remote: bool) -> Result<Region> {
        let access = if remote {
            AccessFlags::LocalWrite | AccessFlags::RemoteWrite
        } else {
            AccessFlags::LocalWrite
        };
        // SAFETY: the caller keeps `len` bytes at `addr` allocated and in place while the region lives.
        match unsafe { self.pd.reg_mr(addr as usize, len, access) } {
            Ok(mr) => Ok(Region {
                mr,
                addr: addr as u64,
                len,
            }),
            Err(err) => Err(registration_error(&self.name, len, &err.to_string())),
        }
    }

    /// A queue pair in INIT, with room for `send_depth` sends and `recv_depth` receives.
    pub fn queue_pair(&self, send_depth: u32, recv_depth: u32) -> Result<Link> {
        let cq = self
            .context
            .create_cq_builder()
            .setup_cqe(send_depth + recv_depth + 1)
            .build()
            .map_err(|err| anyhow!("cannot create a completion queue on {}: {err}", self.name))?;
        let handle = GenericCompletionQueue::from(Arc::clone(&cq));
        let mut qp = self
            .pd
            .create_qp_builder()
            .setup_max_inline_data(MAX_INLINE)
            .setup_send_cq(handle.clone())
            .setup_recv_cq(handle)
            .setup_max_send_wr(send_depth)
            .setup_max_recv_wr(recv_depth.max(1))
            .setup_max_send_sge(1)
            .setup_max_recv_sge(1)
            .build_ex()
            .map_err(|err| anyhow!("cannot create a queue pair on {}: {err}", self.name))?;
        let mut init = QueuePairAttribute::new();
        init.setup_state(QueuePairState::Init)
            .setup_pkey_index(0)
            .setup_port(PORT)
            .setup_access_flags(AccessFlags::LocalWrite | AccessFlags::RemoteWrite);
        qp.modify(&init)
            .map_err(|err| anyhow!("cannot initialise the queue pair on {}: {err}", self.name))?;
        Ok(Link {
            qp,
            cq,
            psn: rand::random::<u32>() & 0xff_ffff,
            device: self.name.clone(),
            gid_index: self.gid_index,
            gid: self.gid,
            lid: self.lid,
            ethernet: self.ethernet,
            mtu: self.mtu,
            connected_mtu: None,
        })
    }
}

/// The GID of `index`, or the automatic choice.
fn choose_gid(
    context: &DeviceContext,
    name: &str,
    index: Option<u8>,
    ethernet: bool,
) -> Result<(u8, Gid, Option<GidType>)> {
    let table: Vec<_> = context
        .query_gid_table()
        .map(|entries| {
            entries
                .into_iter()
                .filter(|e| e.port_num() == PORT as u32 && !e.gid().is_zero())
                .collect()
        })
        .unwrap_or_default();
    let valid = || {
        let list: Vec<String> = table.iter().map(|e| e.gid_index().to_string()).collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    if let Some(index) = index {
        let gid = context
            .query_gid(PORT, index as u32)
            .ok()
            .filter(|g| !g.is_zero());
        let Some(gid) = gid else {
            bail!(
                "GID index {index} of {name} port {PORT} is empty or does not exist: valid indexes are {} (see `ibv_devinfo -v -d {name}`)",
                valid()
            );
        };
        let gid_type = table
            .iter()
            .find(|e| e.gid_index() == index as u32)
            .map(|e| e.gid_type());
        return Ok((index, gid, gid_type));
    }
    if !ethernet {
        let gid = context
            .query_gid(PORT, 0)
            .with_context(|| format!("reading GID 0 of {name}"))?;
        return Ok((0, gid, Some(GidType::InfiniBand)));
    }
    let ipv4 = |g: &Gid| std::net::Ipv6Addr::from(*g).to_ipv4_mapped().is_some();
    let best = table
        .iter()
        .find(|e| e.gid_type() == GidType::RoceV2 && ipv4(&e.gid()))
        .or_else(|| table.iter().find(|e| e.gid_type() == GidType::RoceV2))
        .or_else(|| table.first())
        .ok_or_else(|| {
            anyhow!(
                "{name} port {PORT} has no GID: give its network device an address (RoCE GIDs come from IP addresses)"
            )
        })?;
    Ok((best.gid_index() as u8, best.gid(), Some(best.gid_type())))
}

/// A failed registration, explained: it is nearly always the memory-lock limit.
fn registration_error(device: &str, len: usize, err: &str) -> anyhow::Error {
    let limit_text = match crate::sys::host::memlock_limit() {
        Ok(limit) if limit != libc::RLIM_INFINITY => crate::units::format_bytes(limit),
        _ => "unlimited".to_string(),
    };
    anyhow!(
        "cannot register {} of memory with {device} ({err}): the memory-lock limit is {limit_text} \
         (`ulimit -l`); raise it with `ulimit -l unlimited` (or memlock in /etc/security/limits.conf), \
         or lower --bs × --iodepth",
        crate::units::format_bytes(len as u64)
    )
}

/// A registered buffer.
pub struct Region {
    mr: Arc<MemoryRegion>,
    addr: u64,
    len: usize,
}

impl Region {
    /// What the peer needs to write into it.
    pub fn slot(&self) -> RdmaSlot {
        RdmaSlot {
            addr: self.addr,
            rkey: self.mr.rkey(),
            len: self.len as u32,
        }
    }

    pub fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// What finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// A write of ours was acknowledged by the peer's adapter.
    Write,
    /// A send of ours was acknowledged.
    Send,
    /// The peer's send arrived, with its immediate value.
    Received { imm: u32 },
    /// The peer's write with immediate landed in one of our buffers.
    Written { imm: u32 },
}

#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub wr_id: u64,
    pub finished: Finished,
}

/// An RC queue pair and its completion queue.
pub struct Link {
    qp: ExtendedQueuePair,
    cq: Arc<BasicCompletionQueue>,
    psn: u32,
    device: String,
    gid_index: u8,
    gid: Gid,
    lid: u16,
    ethernet: bool,
    mtu: Mtu,
    connected_mtu: Option<Mtu>,
}

// SAFETY: the queue pair is used from one thread at a time; sideway's handles are raw pointers
// that libibverbs lets any one thread use.
unsafe impl Send for Link {}

impl Link {
    /// This end, for the peer, offering `slots` to write into.
    pub fn endpoint(&self, slots: Vec<RdmaSlot>) -> RdmaEndpoint {
        RdmaEndpoint {
            lid: self.lid,
            qpn: self.qp.qp_number(),
            psn: self.psn,
            gid: self.gid.raw,
            mtu: mtu_bytes(self.mtu),
            slots,
        }
    }

    /// The path MTU in bytes once connected.
    pub fn mtu(&self) -> Option<u32> {
        self.connected_mtu.map(mtu_bytes)
    }

    /// Brings the queue pair to RTR then RTS towards `peer`.
    pub fn connect(&mut self, peer: &RdmaEndpoint) -> Result<()> {
        let mtu = if mtu_bytes(self.mtu) <= peer.mtu {
            self.mtu
        } else {
            mtu_from_bytes(peer.mtu)
        };
        let mut rtr = QueuePairAttribute::new();
        rtr.setup_state(QueuePairState::ReadyToReceive)
            .setup_path_mtu(mtu)
            .setup_dest_qp_num(peer.qpn)
            .setup_rq_psn(peer.psn)
            .setup_max_dest_read_atomic(1)
            .setup_min_rnr_timer(12);
        let mut ah = AddressHandleAttribute::new();
        ah.setup_dest_lid(peer.lid)
            .setup_port(PORT)
            .setup_service_level(0);
        if self.ethernet || peer.gid != [0; 16] {
            ah.setup_grh_src_gid_index(self.gid_index)
                .setup_grh_dest_gid(&Gid { raw: peer.gid })
                .setup_grh_hop_limit(64);
        }
        rtr.setup_address_vector(&ah);
        self.qp.modify(&rtr).map_err(|err| {
            anyhow!(
                "cannot connect {}'s queue pair to the peer's (GID {}): {err}; check both sides use the same GID type (--gid-index)",
                self.device,
                std::net::Ipv6Addr::from(peer.gid)
            )
        })?;
        let mut rts = QueuePairAttribute::new();
        rts.setup_state(QueuePairState::ReadyToSend)
            .setup_sq_psn(self.psn)
            .setup_timeout(ACK_TIMEOUT)
            .setup_retry_cnt(RETRY_COUNT)
            .setup_rnr_retry(RNR_RETRY)
            .setup_max_read_atomic(1);
        self.qp.modify(&rts).map_err(|err| {
            anyhow!(
                "cannot make {}'s queue pair ready to send: {err}",
                self.device
            )
        })?;
        self.connected_mtu = Some(mtu);
        Ok(())
    }

    /// RDMA-WRITEs `len` bytes of `local` at `offset` into the peer's `slot`, with an immediate
    /// value for the peer's receive queue when `imm` is given. Always signaled.
    pub fn write(
        &mut self,
        wr_id: u64,
        local: &Region,
        offset: u64,
        len: u32,
        slot: &RdmaSlot,
        imm: Option<u32>,
    ) -> Result<()> {
        let mut guard = self.qp.start_post_send();
        let wr = guard.construct_wr(wr_id, WorkRequestFlags::Signaled);
        let wr = match imm {
            Some(imm) => wr.setup_write_imm(slot.rkey, slot.addr, imm),
            None => wr.setup_write(slot.rkey, slot.addr),
        };
        // SAFETY: `local`'s memory stays registered while the region lives (register's contract),
        // and the adapter checks the range against its lkey: a bad one fails the work request.
        unsafe { wr.setup_sge(local.lkey(), local.addr() + offset, len) };
        guard
            .post()
            .map_err(|err| anyhow!("posting an RDMA WRITE on {}: {err}", self.device))
    }

    /// RDMA-WRITEs a few bytes carried in the work request itself into the peer's `slot`.
    pub fn write_inline(&mut self, wr_id: u64, data: &[u8], slot: &RdmaSlot) -> Result<()> {
        let mut guard = self.qp.start_post_send();
        guard
            .construct_wr(wr_id, WorkRequestFlags::Signaled | WorkRequestFlags::Inline)
            .setup_write(slot.rkey, slot.addr)
            .setup_inline_data(data);
        guard
            .post()
            .map_err(|err| anyhow!("posting an RDMA WRITE on {}: {err}", self.device))
    }

    /// A send of no bytes carrying `imm`: a credit.
    pub fn send_imm(&mut self, wr_id: u64, imm: u32) -> Result<()> {
        let mut guard = self.qp.start_post_send();
        guard
            .construct_wr(wr_id, WorkRequestFlags::Signaled | WorkRequestFlags::Inline)
            .setup_send_imm(imm)
            .setup_inline_data(&[]);
        guard
            .post()
            .map_err(|err| anyhow!("posting an RDMA SEND on {}: {err}", self.device))
    }

    /// Posts a receive of no bytes: room for one incoming send or write with immediate.
    pub fn receive(&mut self, wr_id: u64) -> Result<()> {
        let mut guard = self.qp.start_post_recv();
        let _ = guard.construct_wr(wr_id);
        guard
            .post()
            .map_err(|err| anyhow!("posting a receive on {}: {err}", self.device))
    }

    /// Appends what has finished to `into`; a failed work request is an error that says why.
    pub fn poll(&self, into: &mut Vec<Completion>) -> Result<()> {
        let mut poller = match self.cq.start_poll() {
            Ok(poller) => poller,
            Err(sideway::ibverbs::completion::PollCompletionQueueError::CompletionQueueEmpty) => {
                return Ok(());
            }
            Err(err) => bail!("polling the completion queue of {}: {err}", self.device),
        };
        for wc in &mut poller {
            let status = wc.status();
            let opcode = wc.opcode();
            if status != WorkCompletionStatus::Success as u32 {
                return Err(completion_error(
                    &self.device,
                    status,
                    opcode,
                    wc.vendor_err(),
                ));
            }
            let finished = match opcode {
                op if op == WorkCompletionOperationType::Write as u32 => Finished::Write,
                op if op == WorkCompletionOperationType::Send as u32 => Finished::Send,
                op if op == WorkCompletionOperationType::Receive as u32 => {
                    Finished::Received { imm: wc.imm_data() }
                }
                op if op == WorkCompletionOperationType::ReceiveWithImmediate as u32 => {
                    Finished::Written { imm: wc.imm_data() }
                }
                other => bail!("{}: unexpected completion (opcode {other})", self.device),
            };
            into.push(Completion {
                wr_id: wc.wr_id(),
                finished,
            });
        }
        Ok(())
    }
}

/// A failed work request in words: what the user can do about it.
fn completion_error(device: &str, status: u32, opcode: u32, vendor: u32) -> anyhow::Error {
    let status_name = format!("{:?}", WorkCompletionStatus::from(status));
    let meaning = match WorkCompletionStatus::from(status) {
        WorkCompletionStatus::RetryCounterExceededError => {
            "the peer's adapter stopped answering (the peer was stopped or killed, or the path between is down)"
        }
        WorkCompletionStatus::WorkRequestFlushedError => {
            "the queue pair had already failed (the peer went away)"
        }
        WorkCompletionStatus::RemoteAccessError => {
            "the peer refused the write (wrong key or address: are both sides the same xferbench version?)"
        }
        WorkCompletionStatus::ResponderNotReadyRetryCounterExceededError => {
            "the peer had no receive posted"
        }
        WorkCompletionStatus::RemoteOperationError
        | WorkCompletionStatus::RemoteInvalidRequestError => {
            "the peer could not carry out the request"
        }
        _ => "the RDMA operation failed",
    };
    anyhow!(
        "RDMA on {device}: {meaning} (completion status {status_name}, opcode {opcode}, vendor error {vendor:#x})"
    )
}

fn mtu_bytes(mtu: Mtu) -> u32 {
    match mtu {
        Mtu::Mtu256 => 256,
        Mtu::Mtu512 => 512,
        Mtu::Mtu1024 => 1024,
        Mtu::Mtu2048 => 2048,
        Mtu::Mtu4096 => 4096,
    }
}

fn mtu_from_bytes(bytes: u32) -> Mtu {
    match bytes {
        0..=256 => Mtu::Mtu256,
        257..=512 => Mtu::Mtu512,
        513..=1024 => Mtu::Mtu1024,
        1025..=2048 => Mtu::Mtu2048,
        _ => Mtu::Mtu4096,
    }
}
