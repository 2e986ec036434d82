//! A file over RDMA: disk → registered slot → RDMA WRITE WITH IMMEDIATE into a slot of the
//! receiver → the receiver writes that slot to disk at its offset → a credit (a SEND) back.
//!
//! Each side owns a ring of `iodepth` registered chunk buffers, so memory is bounded whatever the
//! file size. The immediate value is the chunk's index; which of the receiver's slots a write
//! goes to needs no message: both sides use slots in the order the credits were sent, the
//! sender's ring starting full. RC keeps writes and credits in order, so the two agree.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::{HashMap, VecDeque};

use super::Pulse;
use super::verbs::{Completion, Device, Finished, Link, Region};
use crate::control::RdmaSlot;
use crate::disk::{ALIGN, AlignedBuf, Engine, Op, Submission, buffer::round_up};
use crate::measure::{BusyClock, Counter};
use crate::transport::pipeline::{ChunkPlan, CopyReceived, CopySent, Digest, WriteBehind};

/// Registered chunk buffers; a buffer is out while the disk engine or the adapter holds it.
pub struct Ring {
    regions: Vec<Region>,
    bufs: Vec<Option<AlignedBuf>>,
    /// Slot of each buffer, by address: the engine hands buffers back, not slot numbers.
    by_addr: HashMap<usize, usize>,
}

impl Ring {
    /// `depth` buffers of `chunk` bytes, registered with `device` (for the peer's writes when `remote`).
    pub fn new(device: &Device, plan: ChunkPlan, remote: bool) -> Result<Ring> {
        let mut bufs = Vec::with_capacity(plan.depth);
        let mut regions = Vec::with_capacity(plan.depth);
        let mut by_addr = HashMap::new();
        for slot in 0..plan.depth {
            let mut buf = AlignedBuf::new(plan.chunk);
            let addr = buf.as_mut_ptr();
            // SAFETY: the buffer lives in `bufs` (or in flight, and then back) as long as the ring,
            // and its heap memory does not move with it.
            let region = unsafe { device.register(addr, buf.capacity(), remote) }
                .with_context(|| format!("registering {} chunk buffers", plan.depth))?;
            by_addr.insert(addr as usize, slot);
            regions.push(region);
            bufs.push(Some(buf));
        }
        Ok(Ring {
            regions,
            bufs,
            by_addr,
        })
    }

    /// What the peer needs to write into each slot.
    pub fn slots(&self) -> Vec<RdmaSlot> {
        self.regions.iter().map(Region::slot).collect()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    fn slot_of(&self, buf: &AlignedBuf) -> usize {
        self.by_addr[&(buf.as_ptr() as usize)]
    }
}

/// Chunk `index`'s offset and length in a file of `size`.
fn chunk_at(index: u64, chunk: usize, size: u64) -> (u64, usize) {
    let offset = index * chunk as u64;
    (offset, (size - offset).min(chunk as u64) as usize)
}

/// Chunks a file of `size` is cut into; the immediate value carries the index, so it must fit.
pub fn chunk_count(size: u64, chunk: usize) -> Result<u64> {
    let count = size.div_ceil(chunk as u64);
    if count > u64::from(u32::MAX) {
        bail!(
            "the file has {count} chunks of {chunk} bytes, more than RDMA's 32-bit immediate can number: use a larger --bs"
        );
    }
    Ok(count)
}

/// Credits a receiver sends: one per chunk beyond the slots the sender starts with. Exactly
/// these, so that no send is in flight when the sender, done, tears its queue pair down.
fn credits_needed(chunks: u64, slots: usize) -> u64 {
    chunks.saturating_sub(slots as u64)
}

/// One end of a copy before it connects: a queue pair and a ring of `plan.depth` slots (the
/// peer may write into them when `receiving`), with one receive posted per slot: room for every
/// write with immediate (receiver) or credit (sender) that can be outstanding.
pub fn prepare(device: &Device, plan: ChunkPlan, receiving: bool) -> Result<(Link, Ring)> {
    let mut link = device.queue_pair(plan.depth as u32 + 1, plan.depth as u32)?;
    let ring = Ring::new(device, plan, receiving)?;
    for i in 0..plan.depth {
        link.receive(i as u64)?;
    }
    Ok((link, ring))
}

/// One side of a file on the move: its queue pair, its ring, the file's size and how it is cut.
pub struct Side<'a> {
    pub link: &'a mut Link,
    pub ring: &'a mut Ring,
    pub size: u64,
    pub plan: ChunkPlan,
}

impl<'a> Side<'a> {
    /// Its parts, and how many chunks the file makes (an error when more than the wire numbers).
    fn parts(self) -> Result<(&'a mut Link, &'a mut Ring, u64, ChunkPlan, u64)> {
        let chunks = chunk_count(self.size, self.plan.chunk)?;
        Ok((self.link, self.ring, self.size, self.plan, chunks))
    }
}

/// Reads the engine's file and RDMA-WRITEs it into the peer's `targets`, a chunk per write.
pub fn send_file(
    side: Side<'_>,
    mut engine: Engine,
    targets: &[RdmaSlot],
    counter: &Counter,
    pulse: &mut Pulse,
) -> Result<CopySent> {
    let (link, ring, size, plan, chunks) = side.parts()?;
    if targets.is_empty() || targets.iter().any(|t| (t.len as usize) < plan.chunk) {
        bail!(
            "the peer offered no buffers of {} bytes to write into",
            plan.chunk
        );
    }
    let reading = BusyClock::new();
    let sending = BusyClock::new();
    let mut digest = plan.verify.then(Digest::default);
    // The peer's free slots, in the order it granted them.
    let mut credits: VecDeque<usize> = (0..targets.len()).collect();
    let mut ready: VecDeque<(u64, usize)> = VecDeque::new();
    let mut free: Vec<usize> = (0..ring.len()).rev().collect();
    let (mut next_chunk, mut reads, mut writes, mut acked) = (0u64, 0usize, 0usize, 0u64);
    let mut done: Vec<Completion> = Vec::with_capacity(plan.depth * 2);
    while acked < chunks {
        let mut moved = false;
        while next_chunk < chunks
            && let Some(slot) = free.pop()
        {
            let buf = ring.bufs[slot]
                .take()
                .expect("a free slot holds its buffer");
            let (offset, len) = chunk_at(next_chunk, plan.chunk, size);
            engine.submit(Submission {
                op: Op::Read {
                    len: round_up(len, ALIGN),
                },
                offset,
                buf,
            })?;
            if reads == 0 {
                reading.enter();
            }
            reads += 1;
            next_chunk += 1;
        }
        while let Some(completion) = engine.try_next() {
            moved = true;
            reads -= 1;
            if reads == 0 {
                reading.leave();
            }
            let offset = completion.offset;
            let got = completion
                .result
                .with_context(|| format!("reading at offset {offset}"))?;
            let expected = (size - offset).min(plan.chunk as u64) as usize;
            if got < expected {
                bail!(
                    "the file ended at {} bytes, before its size of {size}: was it truncated during the copy?",
                    offset + got as u64
                );
            }
            let mut buf = completion.buf;
            buf.set_len(expected);
            if let Some(digest) = digest.as_mut() {
                digest.add(offset, buf.as_slice());
            }
            let slot = ring.slot_of(&buf);
            ring.bufs[slot] = Some(buf);
            ready.push_back((offset / plan.chunk as u64, slot));
        }
        while !ready.is_empty()
            && let Some(target) = credits.pop_front()
        {
            let (index, slot) = ready.pop_front().expect("not empty");
            let (_, len) = chunk_at(index, plan.chunk, size);
            link.write(
                slot as u64,
                &ring.regions[slot],
                0,
                len as u32,
                &targets[target],
                Some(index as u32),
            )?;
            if writes == 0 {
                sending.enter();
            }
            writes += 1;
        }
        done.clear();
        link.poll(&mut done)?;
        for completion in &done {
            moved = true;
            match completion.finished {
                Finished::Write => {
                    let slot = completion.wr_id as usize;
                    writes -= 1;
                    if writes == 0 {
                        sending.leave();
                    }
                    acked += 1;
                    counter.add(ring.bufs[slot].as_ref().map_or(0, |b| b.len() as u64));
                    // Free for the next read only now: the adapter was reading from it.
                    free.push(slot);
                }
                Finished::Received { imm } => {
                    credits.push_back(imm as usize % targets.len());
                    link.receive(completion.wr_id)?;
                }
                other => bail!("unexpected completion on the sending side: {other:?}"),
            }
        }
        pulse.pass(moved)?;
    }
    Ok(CopySent {
        bytes: size,
        reading: reading.total(),
        sending: sending.total(),
        digest,
    })
}

/// Writes what the peer RDMA-WRITEs into `ring` to the engine's file, crediting each slot back
/// once its chunk is on the disk.
pub fn receive_file(
    side: Side<'_>,
    mut engine: Engine,
    counter: &Counter,
    pulse: &mut Pulse,
) -> Result<CopyReceived> {
    let (link, ring, size, plan, chunks) = side.parts()?;
    let mut credits_left = credits_needed(chunks, ring.len());
    let mut writes = WriteBehind::default();
    let mut digest = plan.verify.then(Digest::default);
    // Our slots in the order the sender will fill them: the initial ring, then each credit.
    let mut expected: VecDeque<usize> = (0..ring.len()).collect();
    let (mut landed, mut written, mut credits_in_flight) = (0u64, 0u64, 0usize);
    let mut done: Vec<Completion> = Vec::with_capacity(plan.depth * 2);
    while written < chunks || credits_in_flight > 0 {
        let mut moved = false;
        done.clear();
        link.poll(&mut done)?;
        for completion in &done {
            moved = true;
            match completion.finished {
                Finished::Written { imm } => {
                    let index = u64::from(imm);
                    if index >= chunks {
                        bail!("the sender wrote chunk {index} of a file of {chunks} chunks");
                    }
                    let slot = expected
                        .pop_front()
                        .ok_or_else(|| anyhow!("the sender wrote without a credit"))?;
                    let mut buf = ring.bufs[slot]
                        .take()
                        .ok_or_else(|| anyhow!("the sender wrote into a busy slot"))?;
                    let (offset, len) = chunk_at(index, plan.chunk, size);
                    buf.set_len(len);
                    if let Some(digest) = digest.as_mut() {
                        digest.add(offset, buf.as_slice());
                    }
                    writes.submit(&mut engine, offset, buf, len)?;
                    landed += 1;
                    if landed < chunks {
                        link.receive(completion.wr_id)?;
                    }
                }
                Finished::Send => credits_in_flight -= 1,
                other => bail!("unexpected completion on the receiving side: {other:?}"),
            }
        }
        while let Some(completion) = engine.try_next() {
            moved = true;
            let (len, buf) = writes.completed(completion, size, plan.chunk)?;
            written += 1;
            counter.add(len);
            let slot = ring.slot_of(&buf);
            ring.bufs[slot] = Some(buf);
            if credits_left > 0 {
                credits_left -= 1;
                expected.push_back(slot);
                link.send_imm(slot as u64, slot as u32)?;
                credits_in_flight += 1;
            }
        }
        pulse.pass(moved)?;
    }
    Ok(CopyReceived {
        bytes: size,
        writing: writes.busy.total(),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_file_and_the_tail_is_short() {
        let chunk = 1 << 20;
        let size = 5 * chunk as u64 + 77;
        assert_eq!(chunk_count(size, chunk).unwrap(), 6);
        assert_eq!(chunk_at(5, chunk, size), (5 * chunk as u64, 77));
        assert_eq!(chunk_count(0, chunk).unwrap(), 0);
        assert!(chunk_count(u64::MAX, 4096).is_err());
    }

    #[test]
    fn credits_stop_once_the_sender_has_a_slot_for_every_chunk() {
        assert_eq!(credits_needed(3, 16), 0);
        assert_eq!(credits_needed(16, 16), 0);
        assert_eq!(credits_needed(40, 16), 24);
    }
}
