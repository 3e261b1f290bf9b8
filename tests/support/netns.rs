//! The base every namespace lab is built on: root check, names unique across every lab of the
//! test process, a scratch directory, commands run in a namespace, processes started there,
//! waiting for a listener, and the teardown (on drop, also while a test panics).
//!
//! The labs ([`super::lab`], [`super::lab2`], [`super::paths_lab`]) only add their topology and
//! their servers. One counter names them all: two labs built at once by different builders
//! never ask for the same namespace.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Print a skip past the harness's output capture (a direct write to the process's stderr is
/// not captured), or fail if `STUNMAP_LAB_REQUIRED` is set.
pub fn report_skip(test: &str, why: &str) {
    if std::env::var_os("STUNMAP_LAB_REQUIRED").is_some_and(|v| v != "0") {
        panic!("{test}: lab required (STUNMAP_LAB_REQUIRED) but unavailable: {why}");
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "SKIPPED {test}: {why}");
}

/// Labs built by this process so far, of every kind.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Namespaces, processes and a scratch directory owned by one lab.
#[derive(Debug)]
pub struct Netns {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
    /// The stderr file of the last process started.
    last_err: Option<PathBuf>,
    namespaces: Vec<String>,
}

impl Netns {
    /// A new, empty lab whose names start with `sm{kind}{pid}x{n}`; skip when not root or
    /// without `ip`.
    pub fn new(kind: &str) -> Result<Netns, LabError> {
        // `id -u` keeps libc out of the test dependencies.
        let uid = Command::new("id").arg("-u").output().ok();
        if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
            return Err(LabError::Skip("not running as root".into()));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err(LabError::Skip("`ip` (iproute2) not found".into()));
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("sm{kind}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("stunmap-lab-{prefix}"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::Setup(format!("{dir:?}: {e}")))?;
        Ok(Netns {
            prefix,
            dir,
            children: Vec::new(),
            last_err: None,
            namespaces: Vec::new(),
        })
    }

    /// The name of this lab's namespace `suffix`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Create namespace `suffix`; deleted on drop.
    pub fn add(&mut self, suffix: &str) -> Result<String, String> {
        let name = self.name(suffix);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip ARGS` (split on white space), in the root namespace's `ip` (use `-n NS`).
    pub fn ip(&self, args: &str) -> Result<(), String> {
        run(Command::new("ip").args(args.split_whitespace()))
    }

    /// `cmd` in namespace `ns`, not started, standard input closed.
    pub fn command(&self, ns: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(cmd).stdin(Stdio::null());
        c
    }

    /// Run `cmd` in `ns` to completion and return its output (no check of the status).
    pub fn exec_in(&self, ns: &str, cmd: &[&str]) -> std::io::Result<Output> {
        self.command(ns, cmd).output()
    }

    /// Run `cmd` in `ns`; an error with its stderr when it fails.
    pub fn exec_ok(&self, ns: &str, cmd: &[&str]) -> Result<(), String> {
        run(&mut self.command(ns, cmd))
    }

    /// An iptables rule (split on white space) in `ns`.
    pub fn ipt(&self, ns: &str, rule: &str) -> Result<(), String> {
        let mut args = vec!["iptables"];
        args.extend(rule.split_whitespace());
        self.exec_ok(ns, &args)
    }

    /// Load an nftables ruleset into `ns` from a file `file` written in the scratch directory.
    pub fn nft(&self, ns: &str, file: &str, rules: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::write(&path, rules).map_err(|e| format!("{path:?}: {e}"))?;
        self.exec_ok(ns, &["nft", "-f", &path.to_string_lossy()])
    }

    /// Start `cmd` in `ns` with extra environment `env`; killed on drop. Its output goes to
    /// `<name>.<n>.out` and `.err` in the scratch directory. Returns the child's pid.
    pub fn spawn(
        &mut self,
        ns: &str,
        name: &str,
        cmd: &[&str],
        env: &[(&str, &str)],
    ) -> Result<u32, String> {
        let n = self.children.len();
        let [out_path, err_path] =
            ["out", "err"].map(|ext| self.dir.join(format!("{name}.{n}.{ext}")));
        let create =
            |path: &PathBuf| std::fs::File::create(path).map_err(|e| format!("{path:?}: {e}"));
        let (out, err) = (create(&out_path)?, create(&err_path)?);
        let mut c = self.command(ns, cmd);
        c.envs(env.iter().copied()).stdout(out).stderr(err);
        let child = c.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
        let pid = child.id();
        self.children.push(child);
        self.last_err = Some(err_path);
        Ok(pid)
    }

    /// Wait until something in `ns` listens on `addr` (`ip:port`) as `ss -H FLAGS` lists
    /// (`-uln` UDP, `-tln` TCP), up to `limit`. The error says what the last started process
    /// wrote to stderr, the usual reason nothing listens.
    pub fn wait_listener(
        &self,
        ns: &str,
        flags: &str,
        addr: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let out = self
                .exec_in(ns, &["ss", "-H", flags])
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&out.stdout).contains(addr) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "nothing listens on {addr} in {ns} after {limit:?}{}",
                    self.last_stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of the last started process's stderr, for an error.
    fn last_stderr(&self) -> String {
        let text = self
            .last_err
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let text = text.trim();
        let cut = text.len().saturating_sub(400);
        let start = (cut..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        format!(
            "; last process's stderr: {:?}",
            text.get(start..).unwrap_or_default()
        )
    }

    /// `stunmap serve` (the binary `bin`) in `ns` as an RFC 5780 reflector: primary
    /// `primary:3478`, alternate address `alt` and port 3479. Waits until it listens on the
    /// alternate (the last socket it opens) and returns the primary address.
    pub fn start_reflector(
        &mut self,
        ns: &str,
        bin: &str,
        primary: &str,
        alt: &str,
    ) -> Result<String, String> {
        let listen = format!("{primary}:3478");
        let argv = [
            bin,
            "serve",
            "--listen",
            &listen,
            "--alt-address",
            alt,
            "--alt-port",
            "3479",
        ];
        self.spawn(ns, "serve", &argv, &[])?;
        self.wait_listener(ns, "-uln", &format!("{alt}:3479"), Duration::from_secs(20))?;
        Ok(listen)
    }

    /// coturn in `ns` with the configuration lines `conf` plus what every lab's coturn has:
    /// long-term credentials `test:secret`, realm `lab`, FINGERPRINT, no TLS/DTLS/CLI, its
    /// database, pid and log files in the scratch directory (named after `tag`). Waits until
    /// something listens on UDP `wait_for` and a Binding request to it from namespace `asker`
    /// is answered (coturn ignores one from its own addresses).
    pub fn coturn(
        &mut self,
        ns: &str,
        tag: &str,
        conf: &str,
        wait_for: &str,
        asker: &str,
    ) -> Result<(), String> {
        let d = self.dir.to_string_lossy().into_owned();
        let verbose = if std::env::var_os("STUNMAP_LAB_VERBOSE_TURN").is_some() {
            "verbose\n"
        } else {
            ""
        };
        let conf = format!(
            "{conf}lt-cred-mech\nuser=test:secret\nrealm=lab\nfingerprint\nno-tls\nno-dtls\nno-cli\n\
             userdb={d}/turndb{tag}\npidfile={d}/turnserver{tag}.pid\n\
             log-file={d}/turnserver{tag}.log\nsimple-log\n{verbose}"
        );
        let path = self.dir.join(format!("turnserver{tag}.conf"));
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().into_owned();
        self.spawn(ns, "turnserver", &["turnserver", "-c", &path], &[])?;
        self.wait_listener(ns, "-uln", wait_for, Duration::from_secs(20))?;
        self.wait_stun_answer(asker, wait_for);
        Ok(())
    }

    /// Wait until a STUN Binding request to UDP `addr` (`ip:port`) from inside `ns` is
    /// answered, up to 10 s. A listening socket is not yet a server that answers: right after
    /// it binds, coturn answered its first requests later than a measured path's silence rule
    /// waits (`pair_lab` saw a side's NAT read as UDP-blocked in about one run in three). Only
    /// a readiness wait: without an answer the lab goes on and the test judges what it sees.
    pub fn wait_stun_answer(&self, ns: &str, addr: &str) {
        let Some((ip, port)) = addr.rsplit_once(':') else {
            return;
        };
        // RFC 8489 §5: a 20-byte Binding request (type 0x0001, length 0, magic cookie, a
        // random transaction id); the answer echoes the id.
        let script = format!(
            "import os,socket,sys,time\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(0.1)\n\
             tid=os.urandom(12)\nreq=bytes([0,1,0,0,0x21,0x12,0xa4,0x42])+tid\n\
             end=time.time()+10\n\
             while time.time()<end:\n  s.sendto(req,('{ip}',{port}))\n  try:\n    d,_=s.recvfrom(2048)\n    if d[8:20]==tid: sys.exit(0)\n  except OSError: pass\n\
             sys.exit(1)\n"
        );
        let answered = self
            .exec_in(ns, &["python3", "-c", &script])
            .is_ok_and(|o| o.status.success());
        if !answered {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "lab: no STUN answer from {addr} in {ns} within 10 s; going on"
            );
        }
    }
}

impl Drop for Netns {
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

/// Run `cmd` to completion; an error with its stderr when it fails.
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
