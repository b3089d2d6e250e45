//! SKELETON: the event loop generic over a transport.

/// Identifies a connection inside one event loop.
pub type ConnId = usize;
/// Placeholder.
#[derive(Debug)]
pub struct EventLoop;
/// Placeholder.
#[derive(Debug)]
pub struct Context;
/// Placeholder.
#[derive(Debug)]
pub struct LoopConfig;
/// Placeholder.
pub trait Handler {}
