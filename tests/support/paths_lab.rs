//! A lab for the path checks: a client behind a home router (NAT, optionally miniupnpd, a
//! captive portal, a narrow WAN link), optionally behind a carrier NAT, then a "public"
//! namespace with a STUN reflector on two addresses.
//!
//! ```text
//! client ns            home ns                              [carrier ns]                   public ns
//! 192.168.1.2 ─ lan0 ═ lan1 ─ 192.168.1.1
//!                      wan0 ─ HOME_WAN ══════════════════════════════════════════ pub0 ─ 11.0.0.10, .11
//!                      wan0 ─ HOME_WAN ═ cin0 ─ CARRIER_IN   cout0 ─ 11.0.0.1 ═ pub0 ─ 11.0.0.10, .11
//! ```
//!
//! The "public" side uses 11.0.0.0/24, and a home router straight on it 11.0.0.1: miniupnpd
//! refuses to serve a reserved external address (documentation, benchmarking and shared
//! ranges included), so a mapping it creates needs one it calls public. These addresses exist
//! only inside the namespaces this lab creates, which have no link to the root namespace:
//! nothing is ever routed to the real owner of the range. The carrier variant puts the home
//! router on 100.64.1.0/24 (carrier-grade NAT, RFC 6598) or on 11.0.1.0/24 (a public-looking
//! address that is still behind a NAT).
//!
//! Names are unique per process and lab; dropping the lab kills its processes and deletes its
//! namespaces, also while a test panics. Without root, [`PathsLab::new`] skips like
//! `support::lab`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::netns::{LabError, Netns};

/// The client.
pub const CLIENT: &str = "192.168.1.2";
/// The home router, LAN side.
pub const HOME_LAN: &str = "192.168.1.1";
/// The STUN server's primary address.
pub const PUBLIC_1: &str = "11.0.0.10";
/// Its alternate address.
pub const PUBLIC_2: &str = "11.0.0.11";
/// The address the internet sees for the client (the outermost NAT).
pub const OUTER: &str = "11.0.0.1";

/// What lies between the home router and the public namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The home router's WAN is 11.0.0.1 on the public link.
    Direct,
    /// A carrier NAT; the home router's WAN address is `home_wan` (in 100.64.1.0/24 or
    /// 11.0.1.0/24), the carrier's inside address `carrier_in`.
    Carrier {
        /// Home router's WAN address.
        home_wan: &'static str,
        /// Carrier's inside address (the home router's gateway).
        carrier_in: &'static str,
    },
}

/// The namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// The host under test.
    Client,
    /// The home router.
    Home,
    /// The carrier NAT.
    Carrier,
    /// The servers.
    Public,
}

/// A running lab.
#[derive(Debug)]
pub struct PathsLab {
    upstream: Upstream,
    base: Netns,
}

/// Build a paths lab or skip the calling test visibly.
#[macro_export]
macro_rules! paths_lab_or_skip {
    ($up:expr) => {
        match $crate::support::paths_lab::PathsLab::new($up) {
            Ok(lab) => lab,
            Err($crate::support::lab::LabError::Skip(why)) => {
                $crate::support::lab::report_skip(module_path!(), &why);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    };
}

impl PathsLab {
    /// Build the namespaces, addresses, routes and NATs (MASQUERADE on every router's WAN;
    /// the home router drops unsolicited packets to itself, as a home router does).
    pub fn new(upstream: Upstream) -> Result<PathsLab, LabError> {
        let mut lab = PathsLab {
            upstream,
            base: Netns::new("t")?,
        };
        lab.build().map_err(LabError::Setup)?;
        Ok(lab)
    }

    /// A namespace's name.
    pub fn ns(&self, ns: Ns) -> String {
        self.base.name(suffix(ns))
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        self.base.dir()
    }

    fn ip(&self, args: &str) -> Result<(), String> {
        self.base.ip(args)
    }

    fn build(&mut self) -> Result<(), String> {
        let mut all = vec![Ns::Client, Ns::Home, Ns::Public];
        if matches!(self.upstream, Upstream::Carrier { .. }) {
            all.push(Ns::Carrier);
        }
        for ns in all {
            self.base.add(suffix(ns))?;
        }
        let (c, h, p, k) = (
            self.ns(Ns::Client),
            self.ns(Ns::Home),
            self.ns(Ns::Public),
            self.ns(Ns::Carrier),
        );
        self.ip(&format!(
            "-n {c} link add lan0 type veth peer name lan1 netns {h}"
        ))?;
        self.ip(&format!("-n {c} addr add {CLIENT}/24 dev lan0"))?;
        self.ip(&format!("-n {h} addr add {HOME_LAN}/24 dev lan1"))?;
        match self.upstream {
            Upstream::Direct => {
                self.ip(&format!(
                    "-n {h} link add wan0 type veth peer name pub0 netns {p}"
                ))?;
                self.ip(&format!("-n {h} addr add {OUTER}/24 dev wan0"))?;
            }
            Upstream::Carrier {
                home_wan,
                carrier_in,
            } => {
                self.ip(&format!(
                    "-n {h} link add wan0 type veth peer name cin0 netns {k}"
                ))?;
                self.ip(&format!("-n {h} addr add {home_wan}/24 dev wan0"))?;
                self.ip(&format!("-n {k} addr add {carrier_in}/24 dev cin0"))?;
                self.ip(&format!(
                    "-n {k} link add cout0 type veth peer name pub0 netns {p}"
                ))?;
                self.ip(&format!("-n {k} addr add {OUTER}/24 dev cout0"))?;
                for dev in ["cin0", "cout0", "lo"] {
                    self.ip(&format!("-n {k} link set {dev} up"))?;
                }
            }
        }
        self.ip(&format!("-n {p} addr add {PUBLIC_1}/24 dev pub0"))?;
        self.ip(&format!("-n {p} addr add {PUBLIC_2}/24 dev pub0"))?;
        for (ns, dev) in [(&c, "lan0"), (&h, "lan1"), (&h, "wan0"), (&p, "pub0")] {
            self.ip(&format!("-n {ns} link set {dev} up"))?;
        }
        for ns in [&c, &h, &p] {
            self.ip(&format!("-n {ns} link set lo up"))?;
        }
        self.ip(&format!("-n {c} route add default via {HOME_LAN}"))?;
        if let Upstream::Carrier { carrier_in, .. } = self.upstream {
            self.ip(&format!("-n {h} route add default via {carrier_in}"))?;
        }
        self.exec_ok(Ns::Home, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        self.ipt(Ns::Home, "-t nat -A POSTROUTING -o wan0 -j MASQUERADE")?;
        self.ipt(
            Ns::Home,
            "-A INPUT -i wan0 -m conntrack --ctstate NEW,INVALID -j DROP",
        )?;
        if matches!(self.upstream, Upstream::Carrier { .. }) {
            self.exec_ok(Ns::Carrier, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            self.ipt(Ns::Carrier, "-t nat -A POSTROUTING -o cout0 -j MASQUERADE")?;
            self.ipt(
                Ns::Carrier,
                "-A INPUT -i cout0 -m conntrack --ctstate NEW,INVALID -j DROP",
            )?;
        }
        Ok(())
    }

    /// An iptables rule in a namespace.
    pub fn ipt(&self, ns: Ns, rule: &str) -> Result<(), String> {
        self.base.ipt(&self.ns(ns), rule)
    }

    /// Run `cmd` in a namespace to completion (no check of the status).
    pub fn exec_in(&self, ns: Ns, cmd: &[&str]) -> std::io::Result<Output> {
        self.base.exec_in(&self.ns(ns), cmd)
    }

    /// Run `cmd` in a namespace; an error with its stderr when it fails.
    pub fn exec_ok(&self, ns: Ns, cmd: &[&str]) -> Result<(), String> {
        self.base.exec_ok(&self.ns(ns), cmd)
    }

    /// Start `cmd` in a namespace (killed with the lab); its pid.
    pub fn spawn_in(&mut self, ns: Ns, cmd: &[&str]) -> Result<u32, String> {
        let ns = self.ns(ns);
        self.base.spawn(&ns, "child", cmd, &[])
    }

    /// A command to run in a namespace later (the caller waits for it).
    pub fn command(&self, ns: Ns, cmd: &[&str]) -> Command {
        self.base.command(&self.ns(ns), cmd)
    }

    /// Wait until something in `ns` listens on `ss_flags` (`-uln` or `-tln`) `addr`.
    pub fn wait_listener(&self, ns: Ns, ss_flags: &str, addr: &str) -> Result<(), String> {
        self.base
            .wait_listener(&self.ns(ns), ss_flags, addr, Duration::from_secs(20))
    }

    /// `stunmap serve` on PUBLIC_1:3478 with the alternate PUBLIC_2:3479; its address.
    pub fn start_reflector(&mut self, bin: &str) -> Result<String, String> {
        let p = self.ns(Ns::Public);
        self.base.start_reflector(&p, bin, PUBLIC_1, PUBLIC_2)
    }

    /// A tun device named `wt0` in the client (a stand-in for NetBird's WireGuard interface:
    /// it swallows whatever is routed into it) and a route to `dest` through it.
    pub fn tunnel_to(&self, dest: &str) -> Result<(), String> {
        let c = self.ns(Ns::Client);
        self.ip(&format!("-n {c} tuntap add wt0 mode tun"))?;
        self.ip(&format!("-n {c} addr add 10.99.0.1/24 dev wt0"))?;
        self.ip(&format!("-n {c} link set wt0 up"))?;
        self.ip(&format!("-n {c} route add {dest}/32 dev wt0"))
    }

    /// The MTU of the home router's WAN link (both ends).
    pub fn narrow_wan(&self, mtu: u16) -> Result<(), String> {
        let (h, far, dev) = match self.upstream {
            Upstream::Direct => (self.ns(Ns::Home), self.ns(Ns::Public), "pub0"),
            Upstream::Carrier { .. } => (self.ns(Ns::Home), self.ns(Ns::Carrier), "cin0"),
        };
        self.ip(&format!("-n {h} link set wan0 mtu {mtu}"))?;
        self.ip(&format!("-n {far} link set {dev} mtu {mtu}"))
    }

    /// Drop the home router's own ICMP "fragmentation needed" (a PMTU black hole).
    pub fn drop_frag_needed(&self) -> Result<(), String> {
        self.ipt(
            Ns::Home,
            "-A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP",
        )
    }

    /// miniupnpd in the home router (NAT-PMP/PCP and UPnP IGD on the LAN, external interface
    /// wan0, its own nftables tables). Err when it is not installed.
    pub fn start_miniupnpd(&mut self) -> Result<(), String> {
        if Command::new("miniupnpd").arg("--version").output().is_err() {
            return Err("miniupnpd not installed (apt-get install miniupnpd)".into());
        }
        let dir = self.dir().to_string_lossy().into_owned();
        let conf = "ext_ifname=wan0\nlistening_ip=lan1\nport=0\nenable_natpmp=yes\nenable_upnp=yes\n\
             secure_mode=yes\nsystem_uptime=yes\nuuid=3b1f1e2a-5c1d-4a63-9d1e-7f00c0ffee02\n\
             upnp_table_name=stunmap_upnp\nupnp_nat_table_name=stunmap_upnp\n\
             allow 1024-65535 192.168.1.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n";
        let path = self.dir().join("miniupnpd.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().into_owned();
        // The chains miniupnpd's nftables backend adds its rules to (what the package's
        // nft_init.sh sets up), in both families, with accepting policies.
        let mut tables = String::new();
        for family in ["ip", "inet"] {
            tables.push_str(&format!(
                "table {family} stunmap_upnp {{\n\
                 \tchain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}\n\
                 \tchain miniupnpd {{ }}\n\
                 \tchain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}\n\
                 \tchain postrouting {{ type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }}\n\
                 \tchain prerouting_miniupnpd {{ }}\n\
                 \tchain postrouting_miniupnpd {{ }}\n\
                 \tchain miniupnpd-pcp-peer {{ }}\n\
                 }}\n"
            ));
        }
        self.base
            .nft(&self.ns(Ns::Home), "miniupnpd.nft", &tables)?;
        let pid = format!("{dir}/miniupnpd.pid");
        self.spawn_in(Ns::Home, &["miniupnpd", "-d", "-f", &path, "-P", &pid])
            .map_err(|e| e.to_string())?;
        self.wait_listener(Ns::Home, "-uln", &format!("{HOME_LAN}:5351"))
    }

    /// The redirections miniupnpd holds now (its nftables rules that DNAT to the client).
    pub fn upnp_redirects(&self) -> Vec<String> {
        let out = self
            .exec_in(Ns::Home, &["nft", "list", "ruleset"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter(|l| l.contains("dnat") && l.contains(CLIENT))
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// A tiny HTTP server (python3) in `ns` on `addr:port` that answers every request with
    /// `response` (a whole HTTP response).
    pub fn http_server(
        &mut self,
        ns: Ns,
        addr: &str,
        port: u16,
        response: &str,
    ) -> Result<(), String> {
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  c.settimeout(2)\n  try:\n    c.recv(4096)\n    c.sendall({resp:?}.encode())\n  except Exception:\n    pass\n  c.close()\n",
            resp = response
        );
        let path = self.dir().join(format!("http{port}.py"));
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().into_owned();
        self.spawn_in(ns, &["python3", &path])
            .map_err(|e| e.to_string())?;
        self.wait_listener(ns, "-tln", &format!("{addr}:{port}"))
    }
}

/// A namespace's suffix after the lab's prefix.
fn suffix(ns: Ns) -> &'static str {
    match ns {
        Ns::Client => "c",
        Ns::Home => "h",
        Ns::Carrier => "k",
        Ns::Public => "p",
    }
}
