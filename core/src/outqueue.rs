//! The output queue of one connection: bytes the transport has not taken
//! yet, in wire order.
//!
//! Most output is small and is copied into an open segment at the back.
//! A large message the application hands over by value becomes a sealed
//! segment of its own, so its bytes are sent from the buffer they arrived
//! in, never copied. The transport drains the front segment one slice at a
//! time.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// One run of queued bytes.
#[derive(Debug)]
struct Segment {
    bytes: Vec<u8>,
    /// A handed-over buffer: never appended to, so it is never
    /// reallocated (which would copy it).
    sealed: bool,
}

/// Queued output: segments in order, the front one sent up to `start`.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segments: VecDeque<Segment>,
    start: usize,
}

impl OutQueue {
    /// Whether nothing is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the queue holds no memory at all.
    pub(crate) fn is_unallocated(&self) -> bool {
        self.segments.capacity() == 0
    }

    /// The bytes to transmit next: the unsent part of the front segment.
    pub(crate) fn front(&self) -> &[u8] {
        self.segments
            .front()
            .map_or(&[], |segment| &segment.bytes[self.start..])
    }

    /// All queued bytes, in order.
    pub(crate) fn len(&self) -> usize {
        self.segments.iter().map(|s| s.bytes.len()).sum::<usize>() - self.start
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.segments.capacity() * core::mem::size_of::<Segment>()
            + self
                .segments
                .iter()
                .map(|s| s.bytes.capacity())
                .sum::<usize>()
    }

    /// Copies `bytes` behind everything queued.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.open_segment().extend_from_slice(bytes);
        }
    }

    /// Queues a whole buffer as its own segment, without copying it.
    pub(crate) fn push_owned(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.segments.push_back(Segment {
            bytes,
            sealed: true,
        });
    }

    /// The open segment at the back, to encode into; a new one when the
    /// back is sealed. A front segment that is half sent is compacted
    /// first: each byte moves at most once per byte sent, so queueing
    /// stays linear.
    pub(crate) fn open_segment(&mut self) -> &mut Vec<u8> {
        let reuse_back = self.segments.back().is_some_and(|s| !s.sealed);
        if !reuse_back {
            self.segments.push_back(Segment {
                bytes: Vec::new(),
                sealed: false,
            });
        }
        if self.segments.len() == 1 && self.start > 0 {
            let front = &mut self.segments[0].bytes;
            if self.start >= front.len() / 2 {
                front.drain(..self.start);
                self.start = 0;
            }
        }
        let back = self.segments.len() - 1;
        &mut self.segments[back].bytes
    }

    /// Drops the first `n` bytes of the front segment; frees all memory
    /// once the queue is empty.
    pub(crate) fn advance(&mut self, n: usize) {
        let Some(front) = self.segments.front() else {
            return;
        };
        self.start = (self.start + n).min(front.bytes.len());
        if self.start < front.bytes.len() {
            return;
        }
        self.segments.pop_front();
        self.start = 0;
        if self.segments.is_empty() {
            *self = OutQueue::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn drain(queue: &mut OutQueue, step: usize) -> Vec<u8> {
        let mut sent = Vec::new();
        while !queue.is_empty() {
            let n = queue.front().len().min(step);
            sent.extend_from_slice(&queue.front()[..n]);
            queue.advance(n);
        }
        sent
    }

    #[test]
    fn keeps_wire_order_across_copied_and_owned_segments() {
        let mut queue = OutQueue::default();
        queue.push(b"ab");
        queue.push_owned(vec![b'c'; 5]);
        queue.push(b"de");
        queue.open_segment().extend_from_slice(b"f");
        assert_eq!(queue.len(), 10);
        assert_eq!(drain(&mut queue, 3), b"abcccccdef");
        assert!(queue.is_unallocated());
    }

    #[test]
    fn owned_segments_are_never_appended_to() {
        let mut queue = OutQueue::default();
        let big = vec![7u8; 1000];
        let address = big.as_ptr();
        queue.push_owned(big);
        queue.push(b"tail");
        assert_eq!(queue.front().as_ptr(), address);
        assert_eq!(queue.front().len(), 1000);
    }

    #[test]
    fn half_sent_front_is_compacted_before_growing() {
        let mut queue = OutQueue::default();
        queue.push(&[1; 100]);
        queue.advance(60);
        queue.push(&[2; 10]);
        assert_eq!(queue.front().len(), 50);
        assert_eq!(queue.front()[..40], [1; 40]);
        assert_eq!(drain(&mut queue, 7).len(), 50);
    }

    #[test]
    fn empty_pushes_queue_nothing() {
        let mut queue = OutQueue::default();
        queue.push(b"");
        queue.push_owned(Vec::new());
        assert!(queue.is_empty());
        assert!(queue.is_unallocated());
        queue.advance(5);
        assert!(queue.is_empty());
    }
}
