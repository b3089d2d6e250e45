//! Frame-level links under the stacks: an in-memory wire and a TAP device.
//!
//! A [`Link`] moves whole frames (IP packets on the in-memory wire,
//! Ethernet frames on TAP) and keeps the clock the stack runs on. It knows
//! nothing of TCP; the transport above it parses, steers and answers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smoltcp::phy::Medium;

/// A device that moves whole frames, with the clock its stack runs on.
pub trait Link {
    /// What the frames are: IP packets or Ethernet frames.
    fn medium(&self) -> Medium;

    /// Largest frame payload at the IP layer (the MTU).
    fn mtu(&self) -> usize;

    /// Whether checksums must be computed and checked. Two smoltcp stacks
    /// joined in memory can skip them; a kernel peer cannot.
    fn checksums(&self) -> bool;

    /// Takes one received frame, or `None` when none is waiting.
    fn recv(&mut self) -> io::Result<Option<Vec<u8>>>;

    /// Sends one frame.
    fn send(&mut self, frame: Vec<u8>) -> io::Result<()>;

    /// The link's monotonic clock.
    fn now(&self) -> Duration;

    /// Waits until a frame may be waiting or `timeout` passes (`None`: no
    /// limit, where the link can wait at all).
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

/// The frames in flight between the two stacks of an in-memory link, and
/// its simulated clock.
#[derive(Debug, Default)]
struct Wire {
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    now: Duration,
    frames: u64,
}

/// Which stack of an in-memory link a [`MemPort`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The accepting stack.
    Server,
    /// The connecting stack.
    Client,
}

/// One end of an in-memory link: IP packets handed over in a queue, no
/// file descriptor, no privilege.
///
/// Both ends live on one thread and share the queues through an `Rc`. The
/// clock is simulated: it moves only when a stack waits while no frame is
/// in flight either way, by the time it asked to wait. So the stacks' own
/// timers (retransmission, closing) fire as they would, and a slow step
/// over a million connections never looks like a lost segment.
#[derive(Debug)]
pub struct MemPort {
    wire: Rc<RefCell<Wire>>,
    side: Side,
    mtu: usize,
}

impl MemPort {
    /// The two ends of a new link, `(client, server)`, carrying packets of
    /// at most `mtu` bytes.
    pub fn pair(mtu: usize) -> (MemPort, MemPort) {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let client = MemPort {
            wire: Rc::clone(&wire),
            side: Side::Client,
            mtu,
        };
        let server = MemPort {
            wire,
            side: Side::Server,
            mtu,
        };
        (client, server)
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Frames carried either way since the link was made.
    pub fn frames(&self) -> u64 {
        self.wire.borrow().frames
    }

    /// Frames in flight either way right now.
    pub fn in_flight(&self) -> usize {
        let wire = self.wire.borrow();
        wire.to_server.len() + wire.to_client.len()
    }

    /// Moves the simulated clock forward.
    pub fn advance(&self, by: Duration) {
        self.wire.borrow_mut().now += by;
    }
}

impl Link for MemPort {
    fn medium(&self) -> Medium {
        Medium::Ip
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn checksums(&self) -> bool {
        false
    }

    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut wire = self.wire.borrow_mut();
        Ok(match self.side {
            Side::Server => wire.to_server.pop_front(),
            Side::Client => wire.to_client.pop_front(),
        })
    }

    fn send(&mut self, frame: Vec<u8>) -> io::Result<()> {
        let mut wire = self.wire.borrow_mut();
        wire.frames += 1;
        match self.side {
            Side::Server => wire.to_client.push_back(frame),
            Side::Client => wire.to_server.push_back(frame),
        }
        Ok(())
    }

    fn now(&self) -> Duration {
        self.wire.borrow().now
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // One thread steps both stacks: sleeping would stall the peer. Time
        // passes only when nothing is in flight, by what was asked.
        let mut wire = self.wire.borrow_mut();
        if wire.to_server.is_empty() && wire.to_client.is_empty() {
            if let Some(timeout) = timeout {
                wire.now += timeout;
            }
        }
        Ok(())
    }
}

/// `TUNSETIFF` from `<linux/if_tun.h>`: attach the descriptor to a device.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// A TAP (Ethernet) device rather than TUN.
const IFF_TAP: libc::c_short = 0x0002;
/// No packet-information prefix before each frame.
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags, padded
/// to the size of the kernel's union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A Linux TAP device: Ethernet frames to and from the kernel.
///
/// Opened directly through `/dev/net/tun` (non-blocking) so that a device
/// error (the device deleted under a running server, for instance) is an
/// error of the transport's `poll`, not a panic. The clock is the real
/// monotonic one.
#[derive(Debug)]
pub struct TapLink {
    file: File,
    mtu: usize,
    epoch: Instant,
    buf: Vec<u8>,
}

impl TapLink {
    /// Attaches to the TAP device `name` (created by the kernel if it does
    /// not exist; needs `CAP_NET_ADMIN` unless the device is persistent and
    /// owned by the caller), carrying IP packets of at most `mtu` bytes.
    pub fn open(name: &str, mtu: usize) -> io::Result<TapLink> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tap device name must be 1 to 15 bytes without nul",
            ));
        }
        // SAFETY: a constant, nul-terminated path and plain flags.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };

        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        for (slot, byte) in req.name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        // SAFETY: `req` is a valid, initialised ifreq that outlives the
        // call; the kernel reads the name and flags only.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TapLink {
            file,
            mtu,
            epoch: Instant::now(),
            buf: vec![0; mtu + 18],
        })
    }
}

impl Link for TapLink {
    fn medium(&self) -> Medium {
        Medium::Ethernet
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn checksums(&self) -> bool {
        true
    }

    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.file.read(&mut self.buf) {
                Ok(n) => return Ok(Some(self.buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: Vec<u8>) -> io::Result<()> {
        loop {
            match self.file.write(&frame) {
                Ok(_) => return Ok(()),
                // A full device queue drops the frame, as a NIC would; TCP
                // retransmits it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = match timeout {
            None => -1,
            // Round up so a sub-millisecond timer does not spin.
            Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}
