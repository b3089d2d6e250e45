//! The frame queues of one shard, as a smoltcp device.
//!
//! Received frames wait in `rx` until the shard's interface takes them;
//! frames the interface sends collect in `tx` until the transport hands
//! them to the link. Neither queue is bounded here: the transport fills
//! `rx` only with what the link delivered and drains `tx` after every
//! shard poll.
//!
//! Frame buffers are recycled through a pool of the stack, lent to the
//! shard being polled: a received frame's buffer, once the stack has read
//! it, carries the next frame the stack sends. Traffic both ways keeps the
//! pool fed, so a busy link allocates almost nothing per frame.

use std::cell::RefCell;
use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

/// The frames of one shard: received ones waiting for the stack, sent ones
/// waiting for the link.
pub(crate) struct ShardDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    pub(crate) caps: DeviceCapabilities,
    /// The stack's spare buffers while this shard is polled; empty
    /// otherwise.
    pub(crate) pool: RefCell<Vec<Vec<u8>>>,
}

/// Most spare buffers a pool keeps; beyond that they are freed.
const POOL_KEEP: usize = 4096;

pub(crate) struct FrameRx<'a> {
    frame: Vec<u8>,
    pool: &'a RefCell<Vec<Vec<u8>>>,
}

pub(crate) struct FrameTx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    pool: &'a RefCell<Vec<Vec<u8>>>,
}

impl phy::RxToken for FrameRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.frame);
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_KEEP {
            pool.push(self.frame);
        }
        result
    }
}

impl phy::TxToken for FrameTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.pool.borrow_mut().pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        let result = f(&mut frame);
        self.tx.push(frame);
        result
    }
}

impl Device for ShardDevice {
    type RxToken<'a> = FrameRx<'a>;
    type TxToken<'a> = FrameTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(FrameRx<'_>, FrameTx<'_>)> {
        let frame = self.rx.pop_front()?;
        let rx = FrameRx {
            frame,
            pool: &self.pool,
        };
        let tx = FrameTx {
            tx: &mut self.tx,
            pool: &self.pool,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<FrameTx<'_>> {
        Some(FrameTx {
            tx: &mut self.tx,
            pool: &self.pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}
