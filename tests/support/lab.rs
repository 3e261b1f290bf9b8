//! A network lab in Linux namespaces: client → router (kernel NAT / firewall) → "public"
//! namespace with two addresses, for tests against real NAT behaviour.
//!
//! ```text
//! client ns            router ns                          public ns
//! 100.64.0.2/24 ─ lan0 ═ lan1 ─ 100.64.0.1/24
//!                              198.18.0.1/24 ─ wan0 ═ pub0 ─ 198.18.0.10/24, 198.18.0.11/24
//! ```
//!
//! Only 100.64.0.0/10 and 198.18.0.0/15 are used and nothing is attached to the root
//! namespace. Names are unique per process and lab, so tests run in parallel. Dropping the
//! [`Lab`] kills the processes it spawned and deletes the namespaces, also while a test panics.
//!
//! Without root or without `ip`, [`Lab::new`] returns [`LabError::Skip`]; the [`lab_or_skip!`]
//! macro prints that visibly (past the test harness's output capture) and returns from the
//! test. Set `STUNMAP_LAB_REQUIRED=1` (as CI does) to turn a skip into a failure.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::netns::Netns;
pub use super::netns::{LabError, report_skip};

/// Client address.
pub const CLIENT_IP: &str = "100.64.0.2";
/// Router, client side.
pub const ROUTER_LAN_IP: &str = "100.64.0.1";
/// Router, public side (the NAT's external address).
pub const ROUTER_WAN_IP: &str = "198.18.0.1";
/// First public-side server address.
pub const PUBLIC_IP_1: &str = "198.18.0.10";
/// Second public-side server address (RFC 5780 needs two).
pub const PUBLIC_IP_2: &str = "198.18.0.11";

/// What the router does between client and public namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatMode {
    /// `iptables MASQUERADE`: endpoint-independent mapping with port preservation where the port
    /// is free, address-and-port-dependent filtering (conntrack).
    Masquerade,
    /// `MASQUERADE --random-fully`: address-and-port-dependent mapping.
    MasqueradeRandomFully,
    /// nftables masquerade plus a DNAT of every inbound UDP port to the client: endpoint-
    /// independent filtering ("full cone", one client).
    FullCone,
    /// Plain routing: the public namespace has a route back to the client subnet.
    NoNat,
    /// MASQUERADE; forwarding drops everything except replies and TCP to port 443.
    UdpBlockedTcp443Open,
    /// MASQUERADE; forwarding drops everything except replies and UDP to port 3478.
    UdpOnly3478,
    /// Endpoint-independent mapping with address-dependent filtering ("restricted cone"):
    /// nftables masquerade, every (remote IP, client port) the client sends UDP to recorded
    /// in a set, and inbound UDP to the router's WAN address DNATed to the client only from
    /// a recorded IP (any port) to its port. The router keeps client ports (masquerade
    /// preserves a free port), so the set is keyed by the client's port.
    RestrictedCone,
    /// A home router: MASQUERADE, and the WAN side's unsolicited packets to the router itself
    /// dropped (`INPUT -i wan0 --ctstate NEW,INVALID -j DROP`), so no conntrack entry is left
    /// to collide with a later mapping (LAB.md). Port-restricted cone, like MASQUERADE.
    HomeRouter,
}

/// The three namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// The host under test.
    Client,
    /// The NAT / firewall.
    Router,
    /// Servers.
    Public,
}

/// Build a lab or skip the calling test visibly. `lab_or_skip!(NatMode::Masquerade)`.
#[macro_export]
macro_rules! lab_or_skip {
    ($mode:expr) => {
        match $crate::support::lab::Lab::new($mode) {
            Ok(lab) => lab,
            Err($crate::support::lab::LabError::Skip(why)) => {
                $crate::support::lab::report_skip(module_path!(), &why);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    };
}

/// A running lab. See the module docs.
#[derive(Debug)]
pub struct Lab {
    mode: NatMode,
    ns: Netns,
}

impl Lab {
    /// Build the three namespaces and configure the router for `mode`.
    pub fn new(mode: NatMode) -> Result<Lab, LabError> {
        let mut lab = Lab {
            mode,
            ns: Netns::new("l")?,
        };
        // From here on, Drop cleans up whatever was created.
        lab.build().map_err(LabError::Setup)?;
        Ok(lab)
    }

    /// The mode this lab was built with.
    pub fn mode(&self) -> NatMode {
        self.mode
    }

    /// The namespace's name (for `ip netns exec` by hand).
    pub fn ns_name(&self, ns: Ns) -> String {
        self.ns.name(suffix(ns))
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        self.ns.dir()
    }

    fn build(&mut self) -> Result<(), String> {
        for ns in [Ns::Client, Ns::Router, Ns::Public] {
            self.ns.add(suffix(ns))?;
        }
        let (c, r, p) = (
            self.ns_name(Ns::Client),
            self.ns_name(Ns::Router),
            self.ns_name(Ns::Public),
        );
        let ip = |args: &str| self.ns.ip(args);
        // Veth pairs created inside the namespaces, their peers moved straight to the next one:
        // nothing touches the root namespace.
        ip(&format!(
            "-n {c} link add lan0 type veth peer name lan1 netns {r}"
        ))?;
        ip(&format!(
            "-n {r} link add wan0 type veth peer name pub0 netns {p}"
        ))?;
        ip(&format!("-n {c} addr add {CLIENT_IP}/24 dev lan0"))?;
        ip(&format!("-n {r} addr add {ROUTER_LAN_IP}/24 dev lan1"))?;
        ip(&format!("-n {r} addr add {ROUTER_WAN_IP}/24 dev wan0"))?;
        ip(&format!("-n {p} addr add {PUBLIC_IP_1}/24 dev pub0"))?;
        ip(&format!("-n {p} addr add {PUBLIC_IP_2}/24 dev pub0"))?;
        for (ns, dev) in [(&c, "lan0"), (&r, "lan1"), (&r, "wan0"), (&p, "pub0")] {
            ip(&format!("-n {ns} link set {dev} up"))?;
        }
        for ns in [&c, &r, &p] {
            ip(&format!("-n {ns} link set lo up"))?;
        }
        ip(&format!("-n {c} route add default via {ROUTER_LAN_IP}"))?;
        self.ns
            .exec_ok(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;

        let ipt = |rule: &str| self.ns.ipt(&r, rule);
        let masquerade = "-t nat -A POSTROUTING -o wan0 -j MASQUERADE";
        match self.mode {
            NatMode::Masquerade => ipt(masquerade)?,
            NatMode::MasqueradeRandomFully => ipt(&format!("{masquerade} --random-fully"))?,
            NatMode::FullCone => {
                // A native table with its own name (LAB.md: a native `ip nat` table breaks
                // iptables-nft's view of it).
                let rules = format!(
                    "table ip stunmap_fullcone {{\n\
                     \tchain post {{ type nat hook postrouting priority srcnat; oifname \"wan0\" masquerade; }}\n\
                     \tchain pre {{ type nat hook prerouting priority dstnat; iifname \"wan0\" ip daddr {ROUTER_WAN_IP} udp dport 1024-65535 dnat to {CLIENT_IP}; }}\n\
                     }}\n"
                );
                self.ns.nft(&r, "fullcone.nft", &rules)?;
            }
            NatMode::RestrictedCone => {
                // Chain names are the table's own (`fwd` and some others are nft keywords).
                let rules = format!(
                    "table ip stunmap_restricted {{\n\
                     \tset contacted {{ type ipv4_addr . inet_service; flags timeout; timeout 300s; }}\n\
                     \tchain seen {{ type filter hook forward priority filter; iifname \"lan1\" oifname \"wan0\" meta l4proto udp add @contacted {{ ip daddr . udp sport }}; }}\n\
                     \tchain snat_out {{ type nat hook postrouting priority srcnat; oifname \"wan0\" masquerade; }}\n\
                     \tchain dnat_in {{ type nat hook prerouting priority dstnat; iifname \"wan0\" ip daddr {ROUTER_WAN_IP} ip saddr . udp dport @contacted dnat to {CLIENT_IP}; }}\n\
                     \tchain wan_in {{ type filter hook input priority filter; iifname \"wan0\" ct state new,invalid drop; }}\n\
                     }}\n"
                );
                self.ns.nft(&r, "restricted.nft", &rules)?;
            }
            NatMode::HomeRouter => {
                ipt(masquerade)?;
                ipt("-A INPUT -i wan0 -m conntrack --ctstate NEW,INVALID -j DROP")?;
            }
            NatMode::NoNat => {
                ip(&format!(
                    "-n {p} route add 100.64.0.0/24 via {ROUTER_WAN_IP}"
                ))?;
            }
            NatMode::UdpBlockedTcp443Open | NatMode::UdpOnly3478 => {
                ipt(masquerade)?;
                ipt("-P FORWARD DROP")?;
                ipt("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")?;
                let allow = if self.mode == NatMode::UdpOnly3478 {
                    "-A FORWARD -i lan1 -o wan0 -p udp --dport 3478 -j ACCEPT"
                } else {
                    "-A FORWARD -i lan1 -o wan0 -p tcp --dport 443 -j ACCEPT"
                };
                ipt(allow)?;
            }
        }
        Ok(())
    }

    /// Drop `percent` % of the UDP datagrams the router forwards, in each direction, at random
    /// (nft `numgen random mod 100 < N drop`; TCP is left alone).
    pub fn add_udp_loss(&self, percent: u32) -> Result<(), String> {
        let rules = format!(
            "table inet stunmap_loss {{\n\
             \tchain lossy {{ type filter hook forward priority -10; meta l4proto udp numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        self.ns.nft(&self.ns_name(Ns::Router), "loss.nft", &rules)
    }

    /// Run `cmd` in a namespace to completion and return its output (no check of the status).
    pub fn exec_in(&self, ns: Ns, cmd: &[&str]) -> std::io::Result<Output> {
        self.ns.exec_in(&self.ns_name(ns), cmd)
    }

    /// Run `cmd` in a namespace; an error with its stderr when it fails.
    pub fn exec_ok(&self, ns: Ns, cmd: &[&str]) -> Result<(), String> {
        self.ns.exec_ok(&self.ns_name(ns), cmd)
    }

    /// `cmd` in a namespace, not yet started (the caller collects its output).
    pub fn command(&self, ns: Ns, cmd: &[&str]) -> Command {
        self.ns.command(&self.ns_name(ns), cmd)
    }

    /// Start `cmd` in a namespace; the lab kills it on drop. Output goes to files in
    /// [`Lab::dir`] named after the program (`<name>.<n>.out`, `.err`). Returns the child's pid.
    pub fn spawn_in(&mut self, ns: Ns, cmd: &[&str]) -> Result<u32, String> {
        let name = cmd
            .first()
            .and_then(|p| Path::new(p).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cmd".into());
        let ns = self.ns_name(ns);
        self.ns.spawn(&ns, &name, cmd, &[])
    }

    /// Wait until something in `ns` listens on UDP `addr` (`ip:port`), up to `limit`.
    pub fn wait_udp_listener(&self, ns: Ns, addr: &str, limit: Duration) -> Result<(), String> {
        self.ns
            .wait_listener(&self.ns_name(ns), "-uln", addr, limit)
    }

    /// Start `stunmap serve` (the binary `bin`) in the public namespace as an RFC 5780
    /// reflector: primary PUBLIC_IP_1:3478, alternate PUBLIC_IP_2 and port 3479. Waits until it
    /// listens and returns the primary address.
    pub fn start_reflector(&mut self, bin: &str) -> Result<String, String> {
        let p = self.ns_name(Ns::Public);
        self.ns.start_reflector(&p, bin, PUBLIC_IP_1, PUBLIC_IP_2)
    }

    /// Start coturn in the public namespace on both public IPs, primary port `port`, RFC 5780
    /// alternate port `port + 1`, long-term credentials `test:secret`, realm `lab`. Waits until
    /// it listens on both ports.
    pub fn start_coturn(&mut self, port: u16) -> Result<(), String> {
        let ips = format!("listening-ip={PUBLIC_IP_1}\nlistening-ip={PUBLIC_IP_2}\n");
        self.coturn(port, &ips, Some(port + 1), (49152, 49400))?;
        self.wait_udp_listener(
            Ns::Public,
            &format!("{PUBLIC_IP_2}:{}", port + 1),
            Duration::from_secs(20),
        )
    }

    /// Start a second, plain coturn (no RFC 5780 alternate) on PUBLIC_IP_1:`port` only, with
    /// relay ports of its own (49401-49650), beside [`Lab::start_coturn`]'s.
    pub fn start_coturn_plain(&mut self, port: u16) -> Result<(), String> {
        let ips = format!("listening-ip={PUBLIC_IP_1}\n");
        self.coturn(port, &ips, None, (49401, 49650))
    }

    fn coturn(
        &mut self,
        port: u16,
        listening: &str,
        alt: Option<u16>,
        (min, max): (u16, u16),
    ) -> Result<(), String> {
        let alt = alt
            .map(|a| format!("alt-listening-port={a}\n"))
            .unwrap_or_default();
        let conf = format!(
            "{listening}relay-ip={PUBLIC_IP_1}\n\
             listening-port={port}\n{alt}min-port={min}\nmax-port={max}\n"
        );
        let (p, r) = (self.ns_name(Ns::Public), self.ns_name(Ns::Router));
        let wait_for = format!("{PUBLIC_IP_1}:{port}");
        self.ns.coturn(&p, &port.to_string(), &conf, &wait_for, &r)
    }
}

/// A namespace's suffix after the lab's prefix.
fn suffix(ns: Ns) -> &'static str {
    match ns {
        Ns::Client => "c",
        Ns::Router => "r",
        Ns::Public => "p",
    }
}
