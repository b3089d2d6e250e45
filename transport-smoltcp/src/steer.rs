//! Steering frames to shards, as a NIC's receive-side scaling does.
//!
//! A TCP segment goes to the shard chosen by a hash of its 4-tuple. The
//! hash is symmetric (the same for both directions of a flow), so a stack
//! that picks a shard for an outgoing connection from the same function
//! finds the answers in that shard. Frames that are not IPv4 TCP (ARP on
//! an Ethernet link, for instance) go to every shard, which each keep
//! their own neighbour cache.

use smoltcp::phy::Medium;

/// Ethernet II header length (RFC 894).
const ETHERNET_HEADER: usize = 14;
/// EtherType of IPv4.
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// IP protocol number of TCP.
const PROTO_TCP: u8 = 6;

/// Where a received frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Steer {
    /// A TCP segment of the flow hashed to this value.
    Flow {
        /// The flow's symmetric hash.
        hash: u64,
        /// SYN set and ACK clear: an opening segment (RFC 9293 section
        /// 3.5), which consumes a listening socket.
        opening: bool,
    },
    /// Not a TCP segment: every shard gets a copy.
    All,
    /// IPv4 but not steerable (not TCP, a fragment, truncated): shard 0.
    First,
}

/// Classifies a frame of `medium`.
pub(crate) fn classify(frame: &[u8], medium: Medium) -> Steer {
    let ip = match medium {
        Medium::Ethernet => {
            if frame.len() < ETHERNET_HEADER || frame[12..14] != ETHERTYPE_IPV4 {
                return Steer::All;
            }
            &frame[ETHERNET_HEADER..]
        }
        _ => frame,
    };
    classify_ipv4(ip)
}

fn classify_ipv4(ip: &[u8]) -> Steer {
    // RFC 791 section 3.1: version and IHL in the first byte, protocol at
    // 9, addresses at 12 and 16, fragment offset in bytes 6 and 7.
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Steer::First;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let fragment_offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
    let more_fragments = ip[6] & 0x20 != 0;
    if ip[9] != PROTO_TCP || fragment_offset != 0 || more_fragments || ip.len() < ihl + 14 {
        return Steer::First;
    }
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let tcp = &ip[ihl..];
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    // RFC 9293 section 3.1: flags in byte 13; SYN is 0x02, ACK 0x10.
    let flags = tcp[13];
    Steer::Flow {
        hash: flow_hash((src, sport), (dst, dport)),
        opening: flags & 0x12 == 0x02,
    }
}

/// A symmetric hash of a flow's two endpoints (IPv4 address and port).
pub(crate) fn flow_hash(a: (u32, u16), b: (u32, u16)) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let lo = (u64::from(lo.0) << 16) | u64::from(lo.1);
    let hi = (u64::from(hi.0) << 16) | u64::from(hi.1);
    mix(lo ^ hi.rotate_left(29))
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x45;
        ip[9] = PROTO_TCP;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        ip[20..22].copy_from_slice(&sport.to_be_bytes());
        ip[22..24].copy_from_slice(&dport.to_be_bytes());
        ip[33] = flags;
        ip
    }

    #[test]
    fn both_directions_of_a_flow_hash_alike() {
        let there = segment([10, 1, 0, 5], 4000, [10, 0, 0, 1], 9001, 0x02);
        let back = segment([10, 0, 0, 1], 9001, [10, 1, 0, 5], 4000, 0x12);
        let (
            Steer::Flow { hash: a, opening },
            Steer::Flow {
                hash: b,
                opening: back_opening,
            },
        ) = (classify(&there, Medium::Ip), classify(&back, Medium::Ip))
        else {
            panic!("both are TCP segments");
        };
        assert_eq!(a, b);
        assert!(opening);
        assert!(!back_opening, "a SYN-ACK does not consume a listener");
    }

    #[test]
    fn other_flows_spread() {
        let mut shards = [0u32; 8];
        for port in 1024..2048u16 {
            let hash = flow_hash((0x0a01_0005, port), (0x0a00_0001, 9001));
            shards[(hash % 8) as usize] += 1;
        }
        assert!(shards.iter().all(|&n| n > 64), "{shards:?}");
    }

    #[test]
    fn non_tcp_and_short_frames_are_not_flows() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(classify(&arp, Medium::Ethernet), Steer::All);
        assert_eq!(classify(&[0x45, 0, 0], Medium::Ip), Steer::First);
        let mut udp = segment([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, 0);
        udp[9] = 17;
        assert_eq!(classify(&udp, Medium::Ip), Steer::First);
        let mut fragment = segment([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, 0);
        fragment[7] = 3;
        assert_eq!(classify(&fragment, Medium::Ip), Steer::First);
    }
}
