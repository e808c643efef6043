//! Which IP addresses are of the public Internet, for every outbound call the platform
//! makes on someone's word (a data provider's upstream, a webhook): an address is
//! refused unless the IANA special-purpose address registries (IPv4 and IPv6, RFC 6890
//! and its updates) say it is globally reachable. Multicast is refused too, and the
//! IPv6 ranges that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4)
//! are judged by the address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not globally reachable (IANA IPv4 Special-Purpose Address
/// Registry, "Globally Reachable" false or N/A), plus multicast (RFC 5771). Ranges
/// the registry marks globally reachable (AS112, AMT, 192.0.0.9-10) are left out.
pub const V4_REFUSED: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"This network\" (RFC 791)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use (RFC 1918)"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space (RFC 6598)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (RFC 1122)"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local (RFC 3927)"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use (RFC 1918)"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        29,
        "IPv4 service continuity prefix (RFC 7335)",
    ),
    (
        Ipv4Addr::new(192, 0, 0, 8),
        32,
        "IPv4 dummy address (RFC 7600)",
    ),
    (
        Ipv4Addr::new(192, 0, 0, 170),
        31,
        "NAT64/DNS64 discovery (RFC 8880)",
    ),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments (RFC 6890)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation TEST-NET-1 (RFC 5737)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "deprecated 6to4 relay anycast (RFC 7526)",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use (RFC 1918)"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking (RFC 2544)"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation TEST-NET-2 (RFC 5737)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation TEST-NET-3 (RFC 5737)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (RFC 5771)"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (RFC 1112)"),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "limited broadcast (RFC 919)",
    ),
];

/// Exceptions inside a refused IPv4 range that the registry marks globally reachable.
const V4_GLOBAL: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(192, 0, 0, 9), 32), // Port Control Protocol anycast (RFC 7723)
    (Ipv4Addr::new(192, 0, 0, 10), 32), // TURN anycast (RFC 8155)
];

/// IPv6 ranges that are not globally reachable (IANA IPv6 Special-Purpose Address
/// Registry), plus multicast (RFC 4291), the deprecated site-local range (RFC 3879)
/// and the ranges that embed an IPv4 address, which are refused here only when that
/// address is (see [`public_ip`]).
pub const V6_REFUSED: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1),
        128,
        "loopback (RFC 4291)",
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        128,
        "unspecified (RFC 4291)",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use IPv4/IPv6 translation (RFC 8215)",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only (RFC 6666)",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "dummy IPv6 prefix (RFC 9780)",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments (RFC 2928)",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation (RFC 3849)",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation (RFC 9637)",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "segment routing SIDs (RFC 9602)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local (RFC 4193)",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local unicast (RFC 4291)",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "deprecated site-local (RFC 3879)",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast (RFC 4291)",
    ),
];

/// Exceptions inside 2001::/23 that the registry marks globally reachable.
const V6_GLOBAL: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1), 128), // PCP anycast (RFC 7723)
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128), // TURN anycast (RFC 8155)
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3), 128), // DNS-SD SRP anycast (RFC 9665)
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32),  // AMT (RFC 7450)
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48), // AS112-v6 (RFC 7535)
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28), // ORCHIDv2 (RFC 7343)
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28), // DRIP DETs (RFC 9374)
];

fn in_v4(a: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

fn in_v6(a: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    u128::from(a) & mask == u128::from(net) & mask
}

fn public_v4(a: Ipv4Addr) -> bool {
    V4_GLOBAL.iter().any(|&r| in_v4(a, r)) || !V4_REFUSED.iter().any(|&(n, l, _)| in_v4(a, (n, l)))
}

/// The IPv4 address an IPv6 address carries, for the ranges that translate or
/// tunnel to it: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (deprecated),
/// NAT64 `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(m) = a.to_ipv4_mapped() {
        return Some(m);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && u128::from(a) > 1 {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

fn public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(a) {
        return public_v4(v4);
    }
    V6_GLOBAL.iter().any(|&r| in_v6(a, r)) || !V6_REFUSED.iter().any(|&(n, l, _)| in_v6(a, (n, l)))
}

/// Whether `ip` is globally reachable: the rule every outbound call on someone's word
/// (upstreams at publication and at resolution, webhooks) applies.
pub fn public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => public_v4(a),
        IpAddr::V6(a) => public_v6(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every range of both registries that is not globally reachable: its first and
    /// last address are refused; the globally reachable exceptions are accepted.
    #[test]
    fn registries() {
        for &(net, len, what) in V4_REFUSED {
            let first = u32::from(net);
            let last = first | (u32::MAX.checked_shr(u32::from(len)).unwrap_or(0));
            for a in [first, last] {
                let a = Ipv4Addr::from(a);
                let exception = V4_GLOBAL.iter().any(|&r| in_v4(a, r));
                assert_eq!(public_ip(a.into()), exception, "{a} ({what})");
                // The same address through every IPv6 range that carries one.
                let o = a.octets();
                let hi = u16::from_be_bytes([o[0], o[1]]);
                let lo = u16::from_be_bytes([o[2], o[3]]);
                for v6 in [
                    a.to_ipv6_mapped(),
                    Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
                    Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                    Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
                ] {
                    if u128::from(v6) <= 1 {
                        continue; // ::/128 and ::1/128 are their own entries
                    }
                    assert_eq!(
                        public_ip(v6.into()),
                        exception,
                        "{v6} carrying {a} ({what})"
                    );
                }
            }
        }
        for &(net, len, what) in V6_REFUSED {
            let first = u128::from(net);
            let last = first | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            for a in [first, last] {
                let a = Ipv6Addr::from(a);
                let exception = V6_GLOBAL.iter().any(|&r| in_v6(a, r));
                assert_eq!(public_ip(a.into()), exception, "{a} ({what})");
            }
        }
        for (ip, public) in [
            // The list, one address each.
            ("0.1.2.3", false),
            ("198.18.0.1", false),
            ("198.19.255.254", false),
            ("240.0.0.1", false),
            ("224.0.0.251", false),
            ("239.255.255.250", false),
            ("64:ff9b::10.0.0.1", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b:1::1", false),
            ("2002:a00:1::1", false),
            ("2002:7f00:1::", false),
            ("::10.0.0.1", false),
            ("::127.0.0.1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("2001::1", false),
            // Globally reachable.
            ("193.52.1.1", true),
            ("8.8.8.8", true),
            ("192.0.0.9", true),
            ("192.31.196.1", true),
            ("64:ff9b::c134:101", true),
            ("2002:c134:101::1", true),
            ("::ffff:193.52.1.1", true),
            ("2a01:cb00::1", true),
            ("2001:4:112::1", true),
            ("2620:4f:8000::1", true),
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(public_ip(parsed), public, "{ip}");
        }
    }
}
