//! A two-site namespace lab for peer-pair tests: two client networks, each behind its own
//! router with its own NAT mode, and a public namespace that bridges the routers' WAN links.
//!
//! ```text
//! site A: ca 100.64.1.2/24 ─ lan0 ═ lan1 ─ ra 100.64.1.1 │ 198.18.0.1 ─ wan0 ═ ┐
//!                                                                            br0 (public ns)
//! site B: cb 100.64.2.2/24 ─ lan0 ═ lan1 ─ rb 100.64.2.1 │ 198.18.0.2 ─ wan0 ═ ┘ 198.18.0.10, .11
//! ```
//!
//! The public namespace forwards between the routers and holds the servers on 198.18.0.10 and
//! 198.18.0.11. Each router's default route points at 198.18.0.10; a no-NAT site gets a route
//! in the public namespace so the other site can reach its hosts, while a NATed LAN stays
//! unreachable except through its NAT.
//!
//! Every router is a *home router*: it drops unsolicited packets to its own WAN address
//! (`INPUT -i wan0 ctstate NEW,INVALID DROP`). A bare MASQUERADE box that accepts them
//! records a conntrack entry for each unsolicited check, and the client's own later packet
//! on that 4-tuple then leaves from another port, which changes hole punching; home routers
//! do not do that.
//!
//! Names are unique per process and lab; dropping the lab kills what it started and deletes
//! the namespaces.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::netns::{LabError, Netns};

/// Public server addresses.
pub const PUBLIC_1: &str = "198.18.0.10";
/// The second public address (RFC 5780).
pub const PUBLIC_2: &str = "198.18.0.11";
/// The rendezvous port on PUBLIC_1.
pub const RENDEZVOUS_PORT: u16 = 7000;
/// coturn's STUN/TURN port (alternate port + 1).
pub const TURN_PORT: u16 = 3478;

/// What one site's router does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiteMode {
    /// `MASQUERADE`: endpoint-independent mapping, address-and-port-dependent filtering.
    Masquerade,
    /// `MASQUERADE --random-fully`: address-and-port-dependent mapping.
    RandomFully,
    /// nftables masquerade plus DNAT of every inbound UDP port to the client: full cone.
    FullCone,
    /// Plain routing.
    NoNat,
    /// MASQUERADE, and forwarded UDP from the LAN dropped (TCP passes).
    UdpBlocked,
}

impl SiteMode {
    /// Every mode.
    pub const ALL: [SiteMode; 5] = [
        SiteMode::Masquerade,
        SiteMode::RandomFully,
        SiteMode::FullCone,
        SiteMode::NoNat,
        SiteMode::UdpBlocked,
    ];

    /// The name in docs/nat.md.
    pub fn name(self) -> &'static str {
        match self {
            SiteMode::Masquerade => "MASQUERADE",
            SiteMode::RandomFully => "random-fully",
            SiteMode::FullCone => "full cone",
            SiteMode::NoNat => "no NAT",
            SiteMode::UdpBlocked => "UDP blocked",
        }
    }
}

/// One site's router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// NAT mode.
    pub mode: SiteMode,
    /// Random UDP loss in the router's forwarding path, percent.
    pub loss: u8,
}

impl From<SiteMode> for Site {
    fn from(mode: SiteMode) -> Self {
        Site { mode, loss: 0 }
    }
}

/// A running two-site lab.
#[derive(Debug)]
pub struct Lab2 {
    ns: Netns,
}

impl Lab2 {
    /// Build both sites and the public namespace.
    pub fn new(a: Site, b: Site) -> Result<Lab2, LabError> {
        let mut lab = Lab2 {
            ns: Netns::new("p")?,
        };
        lab.build(a, b).map_err(LabError::Setup)?;
        Ok(lab)
    }

    /// The client namespace of site `i` (0 = A, 1 = B).
    pub fn client(&self, i: usize) -> String {
        self.ns.name(&format!("c{i}"))
    }

    fn router(&self, i: usize) -> String {
        self.ns.name(&format!("r{i}"))
    }

    /// The public namespace.
    pub fn public(&self) -> String {
        self.ns.name("p")
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        self.ns.dir()
    }

    fn build(&mut self, a: Site, b: Site) -> Result<(), String> {
        for suffix in ["c0", "r0", "c1", "r1", "p"] {
            self.ns.add(suffix)?;
        }
        let p = self.public();
        let ip = |args: String| self.ns.ip(&args);
        ip(format!("-n {p} link add br0 type bridge"))?;
        ip(format!("-n {p} addr add {PUBLIC_1}/24 dev br0"))?;
        ip(format!("-n {p} addr add {PUBLIC_2}/24 dev br0"))?;
        ip(format!("-n {p} link set br0 up"))?;
        ip(format!("-n {p} link set lo up"))?;
        self.ns
            .exec_ok(&p, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // LAN addresses are dropped on the way, silently, as on the internet (toward an
        // address nobody answers ARP for). Without a route a send to one fails at once in
        // this namespace, and coturn closes the allocation whose relay socket saw the error.
        ip(format!(
            "-n {p} route add 100.64.0.0/10 via 198.18.0.99 dev br0"
        ))?;
        for (i, site) in [a, b].into_iter().enumerate() {
            let (c, r) = (self.client(i), self.router(i));
            let n = i + 1;
            let wan = format!("198.18.0.{n}");
            let lan = format!("100.64.{n}");
            ip(format!(
                "-n {c} link add lan0 type veth peer name lan1 netns {r}"
            ))?;
            ip(format!(
                "-n {r} link add wan0 type veth peer name w{i} netns {p}"
            ))?;
            ip(format!("-n {c} addr add {lan}.2/24 dev lan0"))?;
            ip(format!("-n {r} addr add {lan}.1/24 dev lan1"))?;
            ip(format!("-n {r} addr add {wan}/24 dev wan0"))?;
            ip(format!("-n {p} link set w{i} master br0"))?;
            for (ns, dev) in [
                (&c, "lan0"),
                (&r, "lan1"),
                (&r, "wan0"),
                (&p, &format!("w{i}")),
            ] {
                ip(format!("-n {ns} link set {dev} up"))?;
            }
            for ns in [&c, &r] {
                ip(format!("-n {ns} link set lo up"))?;
            }
            ip(format!("-n {c} route add default via {lan}.1"))?;
            ip(format!("-n {r} route add default via {PUBLIC_1}"))?;
            self.ns
                .exec_ok(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            self.router_rules(i, site, &wan, &format!("{lan}.2"))?;
            if site.mode == SiteMode::NoNat {
                ip(format!("-n {p} route add {lan}.0/24 via {wan}"))?;
            }
        }
        Ok(())
    }

    fn router_rules(&self, i: usize, site: Site, wan: &str, client: &str) -> Result<(), String> {
        let r = self.router(i);
        let ipt = |rule: &str| self.ns.ipt(&r, rule);
        // A home router: nothing unsolicited reaches the router itself.
        ipt("-A INPUT -i wan0 -m conntrack --ctstate NEW,INVALID -j DROP")?;
        let masq = "-t nat -A POSTROUTING -o wan0 -j MASQUERADE";
        match site.mode {
            SiteMode::Masquerade => ipt(masq)?,
            SiteMode::RandomFully => ipt(&format!("{masq} --random-fully"))?,
            SiteMode::FullCone => {
                let rules = format!(
                    "table ip stunmap_fullcone {{\n\
                     \tchain post {{ type nat hook postrouting priority srcnat; oifname \"wan0\" masquerade; }}\n\
                     \tchain pre {{ type nat hook prerouting priority dstnat; iifname \"wan0\" ip daddr {wan} udp dport 1024-65535 dnat to {client}; }}\n\
                     }}\n"
                );
                self.ns.nft(&r, &format!("fullcone{i}.nft"), &rules)?;
            }
            SiteMode::NoNat => {}
            SiteMode::UdpBlocked => {
                ipt(masq)?;
                ipt("-A FORWARD -i lan1 -o wan0 -p udp -j DROP")?;
            }
        }
        if site.loss > 0 {
            let rules = format!(
                "table ip stunmap_loss {{\n\
                 \tchain forward {{ type filter hook forward priority 0; meta l4proto udp numgen random mod 100 < {} drop; }}\n\
                 }}\n",
                site.loss
            );
            self.ns.nft(&r, &format!("loss{i}.nft"), &rules)?;
        }
        Ok(())
    }

    /// Start `cmd` in namespace `ns`; output to `<name>.<n>.out`/`.err` in [`Lab2::dir`].
    /// Killed on drop.
    pub fn spawn(
        &mut self,
        ns: &str,
        name: &str,
        cmd: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(), String> {
        self.ns.spawn(ns, name, cmd, env).map(|_| ())
    }

    /// A command in namespace `ns`, not yet started (the caller collects its output).
    pub fn command(&self, ns: &str, cmd: &[&str]) -> Command {
        self.ns.command(ns, cmd)
    }

    /// Wait until something in `ns` listens on `proto` (`-uln` / `-tln`) `addr`.
    pub fn wait_listener(
        &self,
        ns: &str,
        flags: &str,
        addr: &str,
        limit: Duration,
    ) -> Result<(), String> {
        self.ns.wait_listener(ns, flags, addr, limit)
    }

    /// coturn in the public namespace: STUN with RFC 5780 on both public addresses (ports
    /// 3478 and 3479) and TURN with the long-term credentials `test:secret`, realm `lab`.
    pub fn start_coturn(&mut self) -> Result<(), String> {
        let conf = format!(
            "listening-ip={PUBLIC_1}\nlistening-ip={PUBLIC_2}\nrelay-ip={PUBLIC_1}\n\
             listening-port={TURN_PORT}\nalt-listening-port={alt}\nmin-port=49152\nmax-port=49400\n",
            alt = TURN_PORT + 1,
        );
        let (p, r) = (self.public(), self.router(0));
        self.ns
            .coturn(&p, "", &conf, &format!("{PUBLIC_2}:{TURN_PORT}"), &r)
    }

    /// `stunmap serve` with only the rendezvous, on PUBLIC_1:RENDEZVOUS_PORT.
    pub fn start_rendezvous(&mut self, bin: &str, secret: &str) -> Result<String, String> {
        let listen = format!("{PUBLIC_1}:{RENDEZVOUS_PORT}");
        let p = self.public();
        self.spawn(
            &p,
            "rendezvous",
            &[bin, "serve", "--rendezvous", &listen],
            &[("STUNMAP_PAIR_SECRET", secret)],
        )?;
        self.wait_listener(&p, "-tln", &listen, Duration::from_secs(20))?;
        Ok(listen)
    }
}
