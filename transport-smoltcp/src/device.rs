//! The frame queues of one shard, as a smoltcp device.
//!
//! Received frames wait in `rx` until the shard's interface takes them;
//! frames the interface sends collect in `tx` until the transport hands
//! them to the link. Neither queue is bounded here: the transport fills
//! `rx` only with what the link delivered and drains `tx` after every
//! shard poll.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

/// The frames of one shard: received ones waiting for the stack, sent ones
/// waiting for the link.
pub(crate) struct ShardDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    pub(crate) caps: DeviceCapabilities,
}

pub(crate) struct FrameRx(Vec<u8>);

pub(crate) struct FrameTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for FrameRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for FrameTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.0.push(frame);
        result
    }
}

impl Device for ShardDevice {
    type RxToken<'a> = FrameRx;
    type TxToken<'a> = FrameTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(FrameRx, FrameTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((FrameRx(frame), FrameTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<FrameTx<'_>> {
        Some(FrameTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}
