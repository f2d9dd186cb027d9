//! Test packets from fields (Ethernet + IPv4 + UDP/TCP/ICMP, built with `etherparse`), and
//! the fields of a packet read back, so tests can say "TOS became 0xb8" instead of comparing
//! hex.

use crate::Error;
use etherparse::{
    Ethernet2Header, IpDscp, IpEcn, IpHeaders, IpNumber, Ipv4Header, NetHeaders, PacketBuilder,
    PacketHeaders, TransportHeader,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// An Ethernet/IPv4 packet described by its fields; unset fields take the defaults shown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacketSpec {
    /// `udp` (default), `tcp` (a SYN) or `icmp` (an echo request).
    pub proto: String,
    /// Source MAC, default `02:00:00:00:00:01`.
    pub src_mac: String,
    /// Destination MAC, default `02:00:00:00:00:02`.
    pub dst_mac: String,
    /// Source IPv4 address, default `10.0.0.1`.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address, default `10.0.0.2`.
    pub dst_ip: Ipv4Addr,
    /// Source port (UDP/TCP), default 40000.
    pub src_port: u16,
    /// Destination port (UDP/TCP), default 80.
    pub dst_port: u16,
    /// Time to live, default 64.
    pub ttl: u8,
    /// The whole TOS byte (DSCP << 2 | ECN), default 0.
    pub tos: u8,
    /// Payload as text.
    pub payload: String,
    /// Payload as hex (appended after `payload`).
    pub payload_hex: String,
}

impl Default for PacketSpec {
    fn default() -> Self {
        PacketSpec {
            proto: "udp".to_owned(),
            src_mac: "02:00:00:00:00:01".to_owned(),
            dst_mac: "02:00:00:00:00:02".to_owned(),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 40000,
            dst_port: 80,
            ttl: 64,
            tos: 0,
            payload: String::new(),
            payload_hex: String::new(),
        }
    }
}

impl PacketSpec {
    /// A UDP packet between the given ports, other fields default.
    pub fn udp(src_port: u16, dst_port: u16) -> Self {
        PacketSpec {
            src_port,
            dst_port,
            ..Default::default()
        }
    }

    /// A TCP SYN between the given ports, other fields default.
    pub fn tcp(src_port: u16, dst_port: u16) -> Self {
        PacketSpec {
            proto: "tcp".to_owned(),
            src_port,
            dst_port,
            ..Default::default()
        }
    }

    /// A spec from fields written as TOML, as the CLI's `--packet` takes them:
    /// `proto="udp", dst_port=9999, ttl=1`.
    pub fn from_fields(fields: &str) -> Result<Self, Error> {
        toml::from_str::<toml::Table>(&format!("p = {{ {fields} }}"))
            .and_then(|t| t["p"].clone().try_into())
            .map_err(|e| {
                Error::Packet(format!(
                    "'{fields}': {} (write the fields as TOML, e.g. 'proto=\"udp\", dst_port=9999')",
                    e.message().trim()
                ))
            })
    }

    /// The packet's bytes, with correct lengths and checksums.
    pub fn build(&self) -> Result<Vec<u8>, Error> {
        let mut payload = self.payload.as_bytes().to_vec();
        payload.extend(crate::hex::parse(&self.payload_hex)?);
        let proto = match self.proto.as_str() {
            "udp" => IpNumber::UDP,
            "tcp" => IpNumber::TCP,
            "icmp" => IpNumber::ICMP,
            other => {
                return Err(Error::Packet(format!(
                    "unknown proto '{other}'; use udp, tcp or icmp, or give the packet as hex"
                )));
            }
        };
        let mut ip = Ipv4Header::new(
            0,
            self.ttl,
            proto,
            self.src_ip.octets(),
            self.dst_ip.octets(),
        )
        .map_err(|e| Error::Packet(e.to_string()))?;
        ip.dscp = IpDscp::try_new(self.tos >> 2).map_err(|e| Error::Packet(e.to_string()))?;
        ip.ecn = IpEcn::try_new(self.tos & 3).map_err(|e| Error::Packet(e.to_string()))?;
        let eth = PacketBuilder::ethernet2(parse_mac(&self.src_mac)?, parse_mac(&self.dst_mac)?)
            .ip(IpHeaders::Ipv4(ip, Default::default()));
        let mut out = Vec::new();
        let written = match proto {
            IpNumber::UDP => eth
                .udp(self.src_port, self.dst_port)
                .write(&mut out, &payload),
            IpNumber::TCP => eth
                .tcp(self.src_port, self.dst_port, 1, 64240)
                .syn()
                .write(&mut out, &payload),
            _ => eth.icmpv4_echo_request(1, 1).write(&mut out, &payload),
        };
        written.map_err(|e| Error::Packet(e.to_string()))?;
        Ok(out)
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], Error> {
    let bytes = crate::hex::parse(text)?;
    bytes.try_into().map_err(|_| {
        Error::Packet(format!(
            "'{text}' is not a MAC address (six bytes, e.g. 02:00:00:00:00:01)"
        ))
    })
}

/// The header fields of an Ethernet frame by name (`eth.type`, `ip.tos`, `ip.ttl`,
/// `ip.checksum_ok`, `udp.dst_port`, ...), as text: numbers in decimal, addresses in their
/// usual notation. Layers that do not parse are absent.
pub fn fields(frame: &[u8]) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("len".to_owned(), frame.len().to_string());
    let Ok(headers) = PacketHeaders::from_ethernet_slice(frame) else {
        return f;
    };
    if let Some(eth) = headers.link.and_then(|l| l.ethernet2()) {
        add_eth(&mut f, &eth);
    }
    if let Some(NetHeaders::Ipv4(ip, _)) = &headers.net {
        let checksum_ok = ip.header_checksum == ip.calc_header_checksum();
        let tos = (ip.dscp.value() << 2) | ip.ecn.value();
        for (k, v) in [
            ("ip.src", Ipv4Addr::from(ip.source).to_string()),
            ("ip.dst", Ipv4Addr::from(ip.destination).to_string()),
            ("ip.tos", tos.to_string()),
            ("ip.dscp", ip.dscp.value().to_string()),
            ("ip.ttl", ip.time_to_live.to_string()),
            ("ip.proto", ip.protocol.0.to_string()),
            ("ip.len", ip.total_len.to_string()),
            ("ip.checksum", ip.header_checksum.to_string()),
            ("ip.checksum_ok", checksum_ok.to_string()),
        ] {
            f.insert(k.to_owned(), v);
        }
    }
    match &headers.transport {
        Some(TransportHeader::Udp(u)) => {
            add_ports(&mut f, "udp", u.source_port, u.destination_port)
        }
        Some(TransportHeader::Tcp(t)) => {
            add_ports(&mut f, "tcp", t.source_port, t.destination_port)
        }
        _ => {}
    }
    f
}

/// A one-line description of a frame, like tcpdump's: `UDP 10.0.0.1:40000 > 10.0.0.2:80`.
pub fn describe(frame: &[u8]) -> String {
    let f = fields(frame);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("?");
    for proto in ["udp", "tcp"] {
        if let Some(dport) = f.get(&format!("{proto}.dst_port")) {
            let sport = get(&format!("{proto}.src_port"));
            return format!(
                "{} {}:{sport} > {}:{dport}",
                proto.to_uppercase(),
                get("ip.src"),
                get("ip.dst")
            );
        }
    }
    match (
        f.get("ip.proto").map(String::as_str),
        f.get("eth.type").map(String::as_str),
    ) {
        (Some("1"), _) => format!("ICMP {} > {}", get("ip.src"), get("ip.dst")),
        (Some(p), _) => format!("IP proto {p} {} > {}", get("ip.src"), get("ip.dst")),
        (None, Some("2054")) => "ARP".to_owned(),
        (None, Some("34525")) => "IPv6".to_owned(),
        (None, Some(t)) => format!("ethertype 0x{:04x}", t.parse::<u16>().unwrap_or(0)),
        (None, None) => format!("{} bytes, not an Ethernet frame", frame.len()),
    }
}

fn add_eth(f: &mut BTreeMap<String, String>, eth: &Ethernet2Header) {
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    f.insert("eth.src".to_owned(), mac(eth.source));
    f.insert("eth.dst".to_owned(), mac(eth.destination));
    f.insert("eth.type".to_owned(), eth.ether_type.0.to_string());
}

fn add_ports(f: &mut BTreeMap<String, String>, proto: &str, src: u16, dst: u16) {
    f.insert(format!("{proto}.src_port"), src.to_string());
    f.insert(format!("{proto}.dst_port"), dst.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packet_reads_back() {
        let spec = PacketSpec {
            tos: 0xb8,
            ttl: 3,
            payload: "hi".into(),
            ..PacketSpec::udp(1234, 9999)
        };
        let bytes = spec.build().unwrap();
        assert_eq!(bytes.len(), 14 + 20 + 8 + 2);
        let f = fields(&bytes);
        assert_eq!(f["ip.tos"], "184");
        assert_eq!(f["ip.ttl"], "3");
        assert_eq!(f["ip.checksum_ok"], "true");
        assert_eq!(f["udp.dst_port"], "9999");
        assert_eq!(f["eth.type"], "2048");
        assert_eq!(f["eth.dst"], "02:00:00:00:00:02");
        assert_eq!(describe(&bytes), "UDP 10.0.0.1:1234 > 10.0.0.2:9999");
        assert_eq!(
            describe(
                &PacketSpec {
                    proto: "icmp".into(),
                    ..Default::default()
                }
                .build()
                .unwrap()
            ),
            "ICMP 10.0.0.1 > 10.0.0.2"
        );
        assert_eq!(describe(&[0; 10]), "10 bytes, not an Ethernet frame");
    }

    #[test]
    fn bad_fields_are_errors() {
        let bad = PacketSpec {
            proto: "sctp".into(),
            ..Default::default()
        };
        assert!(
            bad.build()
                .unwrap_err()
                .to_string()
                .contains("udp, tcp or icmp")
        );
        let bad = PacketSpec {
            src_mac: "01:02".into(),
            ..Default::default()
        };
        assert!(bad.build().is_err());
    }
}
