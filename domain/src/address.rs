//! Endpoint safety (`docs/ARCHITECTURE.md`, "Address policy"): which IP addresses a webhook may
//! reach. Pure: callers resolve names; this only judges addresses.
//!
//! Only publicly routable unicast addresses pass. An operator allow-list of
//! CIDRs (off by default) lets local development and tests reach loopback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is (or is not) reachable from a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Unspecified,
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// RFC 6598 carrier-grade NAT, 100.64/10.
    SharedCgnat,
    /// 169.254/16 (cloud metadata lives here) and fe80::/10.
    LinkLocal,
    Multicast,
    Broadcast,
    /// fc00::/7.
    UniqueLocal,
    /// Documentation, benchmarking, protocol-assignment and reserved ranges.
    Reserved,
}

impl AddressClass {
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private (RFC 1918)",
            AddressClass::SharedCgnat => "shared (carrier-grade NAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address. IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) IPv6 forms are
/// judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if a == 100 && (64..128).contains(&b) {
        AddressClass::SharedCgnat
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_documentation()
        || a >= 240 // 240/4 reserved for future use
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || (a == 192 && b == 88 && c == 99)
    // 192.88.99.0/24 deprecated 6to4 relay anycast
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_multicast() {
        AddressClass::Multicast
    } else if seg[0] & 0xfe00 == 0xfc00 {
        AddressClass::UniqueLocal
    } else if seg[0] & 0xffc0 == 0xfe80 || seg[0] & 0xffc0 == 0xfec0 {
        // fe80::/10 link-local; fec0::/10 deprecated site-local
        AddressClass::LinkLocal
    } else if seg[0] & 0xe000 != 0x2000 // outside 2000::/3 global unicast
        || (seg[0] == 0x2001 && seg[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo, ORCHID, ...)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
        || (seg[0] == 0x3fff && seg[1] < 0x1000)
    // 3fff::/20 documentation
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address stands for, where it stands for one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low = || {
        Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        )
    };
    match seg {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible form)
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low()),
        // 64:ff9b::/96 NAT64 well-known prefix
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low()),
        // 64:ff9b:1::/48 local-use NAT64: never public, judge as private
        [0x64, 0xff9b, 1, ..] => Some(Ipv4Addr::new(10, 0, 0, 0)),
        // 2002:AABB:CCDD::/48 6to4
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The address rule in force: public addresses, plus the operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

/// An address the policy refuses. Its `Display` is the short failure reason
/// recorded on a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("blocked address")]
pub struct BlockedAddress {
    pub ip: IpAddr,
    pub class: AddressClass,
}

impl AddressPolicy {
    /// Public addresses only: the production default.
    #[mutants::skip] // equivalent: its only mutant, `Default::default()`, is its body
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public addresses plus the given networks (local development, tests).
    pub fn with_allow_list(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    pub fn allow_list(&self) -> &[IpNet] {
        &self.allow
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        let class = classify(ip);
        if class == AddressClass::Public || self.allows(ip) {
            Ok(())
        } else {
            Err(BlockedAddress { ip, class })
        }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
    }
}

impl fmt::Display for AddressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow.is_empty() {
            return f.write_str("public addresses only");
        }
        f.write_str("public addresses and ")?;
        for (i, net) in self.allow.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
            assert_eq!(
                AddressPolicy::public_only().check(ip.parse().unwrap()),
                Ok(())
            );
        }
    }

    #[test]
    fn every_refused_class() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.255.254", AddressClass::Loopback),
            ("10.0.0.1", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("169.254.0.1", AddressClass::LinkLocal),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("192.0.2.1", AddressClass::Reserved),
            ("198.51.100.7", AddressClass::Reserved),
            ("203.0.113.9", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
            ("::", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("fc00::1", AddressClass::UniqueLocal),
            ("fd12:3456:789a::1", AddressClass::UniqueLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf::1", AddressClass::LinkLocal),
            ("fec0::1", AddressClass::LinkLocal),
            ("ff02::1", AddressClass::Multicast),
            ("ff0e::1", AddressClass::Multicast),
            ("2001:db8::1", AddressClass::Reserved),
            ("2001::1", AddressClass::Reserved),
            ("100::1", AddressClass::Reserved),
            ("fd00:ec2::254", AddressClass::UniqueLocal),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
            let err = AddressPolicy::public_only()
                .check(ip.parse().unwrap())
                .unwrap_err();
            assert_eq!(err.class, expected);
            assert_eq!(err.to_string(), "blocked address");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_are_judged_by_the_ipv4_inside() {
        let cases = [
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:7f00:1", AddressClass::Loopback),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:100.64.0.1", AddressClass::SharedCgnat),
            ("::ffff:0.0.0.0", AddressClass::Unspecified),
            ("::127.0.0.1", AddressClass::Loopback),
            ("::192.168.0.1", AddressClass::Private),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("64:ff9b:1::808:808", AddressClass::Private),
            ("2002:7f00:0001::1", AddressClass::Loopback),
            ("2002:c0a8:0101::1", AddressClass::Private),
        ];
        for (ip, expected) in cases {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    /// Each special range: its first and last address, and the neighbours
    /// just outside it, with the class each must get.
    #[test]
    fn every_range_is_exact_at_both_ends() {
        use AddressClass::*;
        let table: &[(&str, &[(&str, AddressClass)])] = &[
            (
                "192.0.0.0/24 protocol assignments",
                &[
                    ("191.255.255.255", Public),
                    ("192.0.0.0", Reserved),
                    ("192.0.0.255", Reserved),
                    ("192.0.1.0", Public),
                ],
            ),
            (
                "198.18.0.0/15 benchmarking",
                &[
                    ("198.17.255.255", Public),
                    ("198.18.0.0", Reserved),
                    ("198.19.255.255", Reserved),
                    ("198.20.0.0", Public),
                ],
            ),
            (
                "192.88.99.0/24 6to4 relay anycast",
                &[
                    ("192.88.98.255", Public),
                    ("192.88.99.0", Reserved),
                    ("192.88.99.255", Reserved),
                    ("192.88.100.0", Public),
                ],
            ),
            (
                "100.64.0.0/10 shared",
                &[
                    ("100.63.255.255", Public),
                    ("100.64.0.0", SharedCgnat),
                    ("100.127.255.255", SharedCgnat),
                    ("100.128.0.0", Public),
                ],
            ),
            (
                "240.0.0.0/4 reserved",
                &[
                    ("239.255.255.255", Multicast),
                    ("240.0.0.0", Reserved),
                    ("255.255.255.254", Reserved),
                    ("255.255.255.255", Broadcast),
                ],
            ),
            (
                "0.0.0.0/8 this network",
                &[
                    ("0.0.0.0", Unspecified),
                    ("0.255.255.255", Unspecified),
                    ("1.0.0.0", Public),
                ],
            ),
            (
                "2000::/3 global unicast",
                &[
                    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("2000::", Public),
                    ("3ffe:ffff::1", Public),
                    ("4000::", Reserved),
                ],
            ),
            (
                "2001::/23 protocol assignments",
                &[
                    ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
                    ("2001::", Reserved),
                    ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("2001:200::", Public),
                ],
            ),
            (
                "2001:db8::/32 documentation",
                &[
                    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Public),
                    ("2001:db8::", Reserved),
                    ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("2001:db9::", Public),
                ],
            ),
            (
                "3fff::/20 documentation",
                &[
                    ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
                    ("3fff::", Reserved),
                    ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("3fff:1000::", Public),
                ],
            ),
            (
                "fc00::/7 unique local",
                &[
                    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("fc00::", UniqueLocal),
                    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UniqueLocal),
                    ("fe00::", Reserved),
                ],
            ),
            (
                "fe80::/10 and fec0::/10 link and site local",
                &[
                    ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
                    ("fe80::", LinkLocal),
                    ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
                    ("ff00::", Multicast),
                ],
            ),
        ];
        for (range, cases) in table {
            for (ip, expected) in *cases {
                assert_eq!(class(ip), *expected, "{range}: {ip}");
            }
        }
    }

    /// The IPv4 address inside NAT64 and 6to4 addresses is read byte by
    /// byte: each of its four bytes decides the class somewhere.
    #[test]
    fn the_ipv4_inside_nat64_and_6to4_is_read_exactly() {
        use AddressClass::*;
        for (ip, expected) in [
            ("64:ff9b::c0a8:101", Private),   // 192.168.1.1
            ("64:ff9b::a9fe:101", LinkLocal), // 169.254.1.1
            ("64:ff9b::6440:1", SharedCgnat), // 100.64.0.1
            ("64:ff9b::c000:2ff", Reserved),  // 192.0.2.255
            ("64:ff9b::c058:6301", Reserved), // 192.88.99.1
            ("64:ff9b::c058:6401", Public),   // 192.88.100.1
            ("64:ff9b::101:101", Public),     // 1.1.1.1
            ("::ffff:c0a8:101", Private),     // 192.168.1.1
            ("2002:c0a8:101::", Private),     // 192.168.1.1
            ("2002:a9fe:101::", LinkLocal),   // 169.254.1.1
            ("2002:6440:1::", SharedCgnat),   // 100.64.0.1
            ("2002:c058:6301::", Reserved),   // 192.88.99.1
            ("2002:c058:6401::", Public),     // 192.88.100.1
            ("2002:101:101::", Public),       // 1.1.1.1
            ("2002:e000:1::", Multicast),     // 224.0.0.1
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn the_default_policy_is_public_only_and_an_allow_list_is_kept() {
        assert_eq!(AddressPolicy::public_only(), AddressPolicy::default());
        assert!(AddressPolicy::public_only().allow_list().is_empty());
        let nets: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let policy = AddressPolicy::with_allow_list(nets.clone());
        assert_eq!(policy.allow_list(), nets.as_slice());
        assert_ne!(policy, AddressPolicy::public_only());
    }

    #[test]
    fn allow_list_admits_only_its_networks() {
        let policy = AddressPolicy::with_allow_list(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert_eq!(policy.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("::1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("8.8.8.8".parse().unwrap()), Ok(()));
        for still_refused in [
            "10.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(
                policy.check(still_refused.parse().unwrap()).is_err(),
                "{still_refused}"
            );
        }
        assert_eq!(
            policy.to_string(),
            "public addresses and 127.0.0.0/8, ::1/128"
        );
        assert_eq!(
            AddressPolicy::public_only().to_string(),
            "public addresses only"
        );
    }
}
