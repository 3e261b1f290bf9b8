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

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Why a lab could not be built.
#[derive(Debug)]
pub enum LabError {
    /// The environment cannot run the lab (not root, `ip` missing): skip the test.
    Skip(String),
    /// A setup command failed.
    Setup(String),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Skip(why) => write!(f, "lab unavailable: {why}"),
            LabError::Setup(why) => write!(f, "lab setup failed: {why}"),
        }
    }
}

impl std::error::Error for LabError {}

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

/// Print a skip past the harness's output capture (a direct write to the process's stderr is
/// not captured), or fail if `STUNMAP_LAB_REQUIRED` is set.
pub fn report_skip(test: &str, why: &str) {
    if std::env::var_os("STUNMAP_LAB_REQUIRED").is_some_and(|v| v != "0") {
        panic!("{test}: lab required (STUNMAP_LAB_REQUIRED) but unavailable: {why}");
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "SKIPPED {test}: {why}");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running lab. See the module docs.
#[derive(Debug)]
pub struct Lab {
    mode: NatMode,
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
    namespaces: Vec<String>,
}

impl Lab {
    /// Build the three namespaces and configure the router for `mode`.
    pub fn new(mode: NatMode) -> Result<Lab, LabError> {
        // `id -u` keeps libc out of the test dependencies.
        let uid = Command::new("id").arg("-u").output().ok();
        let is_root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !is_root {
            return Err(LabError::Skip("not running as root".into()));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err(LabError::Skip("`ip` (iproute2) not found".into()));
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("sml{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("stunmap-lab-{prefix}"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::Setup(format!("{dir:?}: {e}")))?;
        let mut lab = Lab {
            mode,
            prefix,
            dir,
            children: Vec::new(),
            namespaces: Vec::new(),
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
        let suffix = match ns {
            Ns::Client => "c",
            Ns::Router => "r",
            Ns::Public => "p",
        };
        format!("{}{suffix}", self.prefix)
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn build(&mut self) -> Result<(), String> {
        for ns in [Ns::Client, Ns::Router, Ns::Public] {
            let name = self.ns_name(ns);
            run(Command::new("ip").args(["netns", "add", &name]))?;
            self.namespaces.push(name);
        }
        let (c, r, p) = (
            self.ns_name(Ns::Client),
            self.ns_name(Ns::Router),
            self.ns_name(Ns::Public),
        );
        let ip = |args: &str| -> Result<(), String> {
            run(Command::new("ip").args(args.split_whitespace()))
        };
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
        self.exec_ok(Ns::Router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;

        let ipt = |lab: &Lab, rule: &str| -> Result<(), String> {
            let mut args = vec!["iptables"];
            args.extend(rule.split_whitespace());
            lab.exec_ok(Ns::Router, &args)
        };
        let masquerade = "-t nat -A POSTROUTING -o wan0 -j MASQUERADE";
        match self.mode {
            NatMode::Masquerade => ipt(self, masquerade)?,
            NatMode::MasqueradeRandomFully => ipt(self, &format!("{masquerade} --random-fully"))?,
            NatMode::FullCone => {
                // A native table with its own name (LAB.md: a native `ip nat` table breaks
                // iptables-nft's view of it).
                let rules = format!(
                    "table ip stunmap_fullcone {{\n\
                     \tchain post {{ type nat hook postrouting priority srcnat; oifname \"wan0\" masquerade; }}\n\
                     \tchain pre {{ type nat hook prerouting priority dstnat; iifname \"wan0\" ip daddr {ROUTER_WAN_IP} udp dport 1024-65535 dnat to {CLIENT_IP}; }}\n\
                     }}\n"
                );
                let file = self.dir.join("fullcone.nft");
                std::fs::write(&file, rules).map_err(|e| e.to_string())?;
                let file = file.to_string_lossy().into_owned();
                self.exec_ok(Ns::Router, &["nft", "-f", &file])?;
            }
            NatMode::RestrictedCone => {
                let rules = format!(
                    "table ip stunmap_restricted {{\n\
                     \tset contacted {{ type ipv4_addr . inet_service; flags timeout; timeout 300s; }}\n\
                     \tchain seen {{ type filter hook forward priority filter; iifname \"lan1\" oifname \"wan0\" meta l4proto udp add @contacted {{ ip daddr . udp sport }}; }}\n\
                     \tchain snat_out {{ type nat hook postrouting priority srcnat; oifname \"wan0\" masquerade; }}\n\
                     \tchain dnat_in {{ type nat hook prerouting priority dstnat; iifname \"wan0\" ip daddr {ROUTER_WAN_IP} ip saddr . udp dport @contacted dnat to {CLIENT_IP}; }}\n\
                     \tchain wan_in {{ type filter hook input priority filter; iifname \"wan0\" ct state new,invalid drop; }}\n\
                     }}\n"
                );
                // Chain names are the table's own (`fwd` and some others are nft keywords).
                let file = self.dir.join("restricted.nft");
                std::fs::write(&file, rules).map_err(|e| e.to_string())?;
                let file = file.to_string_lossy().into_owned();
                self.exec_ok(Ns::Router, &["nft", "-f", &file])?;
            }
            NatMode::HomeRouter => {
                ipt(self, masquerade)?;
                ipt(
                    self,
                    "-A INPUT -i wan0 -m conntrack --ctstate NEW,INVALID -j DROP",
                )?;
            }
            NatMode::NoNat => {
                ip(&format!(
                    "-n {p} route add 100.64.0.0/24 via {ROUTER_WAN_IP}"
                ))?;
            }
            NatMode::UdpBlockedTcp443Open | NatMode::UdpOnly3478 => {
                ipt(self, masquerade)?;
                ipt(self, "-P FORWARD DROP")?;
                ipt(
                    self,
                    "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                )?;
                let allow = if self.mode == NatMode::UdpOnly3478 {
                    "-A FORWARD -i lan1 -o wan0 -p udp --dport 3478 -j ACCEPT"
                } else {
                    "-A FORWARD -i lan1 -o wan0 -p tcp --dport 443 -j ACCEPT"
                };
                ipt(self, allow)?;
            }
        }
        Ok(())
    }

    fn command_in(&self, ns: Ns, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns_name(ns)]);
        c.args(cmd);
        c
    }

    /// Drop `percent` % of the UDP datagrams the router forwards, in each direction, at random
    /// (nft `numgen random mod 100 < N drop`; TCP is left alone).
    pub fn add_udp_loss(&self, percent: u32) -> Result<(), String> {
        let rules = format!(
            "table inet stunmap_loss {{\n\
             \tchain lossy {{ type filter hook forward priority -10; meta l4proto udp numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let file = self.dir.join("loss.nft");
        std::fs::write(&file, rules).map_err(|e| e.to_string())?;
        let file = file.to_string_lossy().into_owned();
        self.exec_ok(Ns::Router, &["nft", "-f", &file])
    }

    /// Run `cmd` in a namespace to completion and return its output (no check of the status).
    pub fn exec_in(&self, ns: Ns, cmd: &[&str]) -> std::io::Result<Output> {
        self.command_in(ns, cmd).stdin(Stdio::null()).output()
    }

    /// Run `cmd` in a namespace; an error with its stderr when it fails.
    pub fn exec_ok(&self, ns: Ns, cmd: &[&str]) -> Result<(), String> {
        run(&mut self.command_in(ns, cmd))
    }

    /// Start `cmd` in a namespace; the lab kills it on drop. Output goes to files in
    /// [`Lab::dir`] named after the program (`<name>.out`, `<name>.err`). Returns the child's pid.
    pub fn spawn_in(&mut self, ns: Ns, cmd: &[&str]) -> std::io::Result<u32> {
        let name = cmd
            .first()
            .and_then(|p| Path::new(p).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cmd".into());
        let n = self.children.len();
        let out = std::fs::File::create(self.dir.join(format!("{name}.{n}.out")))?;
        let err = std::fs::File::create(self.dir.join(format!("{name}.{n}.err")))?;
        let child = self
            .command_in(ns, cmd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Wait until something in `ns` listens on UDP `addr` (`ip:port`), up to `limit`.
    pub fn wait_udp_listener(&self, ns: Ns, addr: &str, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let out = self
                .exec_in(ns, &["ss", "-Huln"])
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&out.stdout).contains(addr) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("nothing listens on udp {addr} after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start `stunmap serve` (the binary `bin`) in the public namespace as an RFC 5780
    /// reflector: primary PUBLIC_IP_1:3478, alternate PUBLIC_IP_2 and port 3479. Waits until it
    /// listens and returns the primary address.
    pub fn start_reflector(&mut self, bin: &str) -> Result<String, String> {
        let listen = format!("{PUBLIC_IP_1}:3478");
        self.spawn_in(
            Ns::Public,
            &[
                bin,
                "serve",
                "--listen",
                &listen,
                "--alt-address",
                PUBLIC_IP_2,
                "--alt-port",
                "3479",
            ],
        )
        .map_err(|e| format!("spawn serve: {e}"))?;
        self.wait_udp_listener(
            Ns::Public,
            &format!("{PUBLIC_IP_2}:3479"),
            Duration::from_secs(20),
        )?;
        Ok(listen)
    }

    /// Start coturn in the public namespace on both public IPs, primary port `port`, RFC 5780
    /// alternate port `port + 1`, long-term credentials `test:secret`, realm `lab`. Waits until
    /// it listens.
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
        relay_ports: (u16, u16),
    ) -> Result<(), String> {
        let d = self.dir.to_string_lossy().into_owned();
        let alt = alt
            .map(|a| format!("alt-listening-port={a}\n"))
            .unwrap_or_default();
        let (min, max) = relay_ports;
        let conf = format!(
            "{listening}relay-ip={PUBLIC_IP_1}\n\
             listening-port={port}\n{alt}min-port={min}\nmax-port={max}\n\
             lt-cred-mech\nuser=test:secret\nrealm=lab\nfingerprint\nno-tls\nno-dtls\nno-cli\n\
             userdb={d}/turndb{port}\npidfile={d}/turnserver{port}.pid\n\
             log-file={d}/turnserver{port}.log\nsimple-log\n"
        );
        let path = self.dir.join(format!("turnserver{port}.conf"));
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().into_owned();
        self.spawn_in(Ns::Public, &["turnserver", "-c", &path])
            .map_err(|e| format!("turnserver: {e}"))?;
        self.wait_udp_listener(
            Ns::Public,
            &format!("{PUBLIC_IP_1}:{port}"),
            Duration::from_secs(20),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace kills nothing by itself; the children above were all we started.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
