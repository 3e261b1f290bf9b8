//! `stunmap host` end to end: saved sources (Windows cmdlet JSON and Linux tool output) and the
//! live read of this host, each validated against docs/schema/host-v1.json; bad flags and
//! bad files exit 64 with one line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{json, stunmap, validate};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/tests/fixtures/hostfw")
}

/// A scratch folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("stunmap-host-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn finding<'a>(v: &'a Value, kind: &str, subject_has: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind && f["subject"].as_str().unwrap().contains(subject_has))
        .unwrap_or_else(|| panic!("no {kind} finding with {subject_has:?}: {v:#}"))
}

#[test]
fn windows_cmdlet_json_with_problems_blocks_and_names_the_security_product() {
    let dir = fixtures().join("windows-problems");
    let out = stunmap(&["host", "--json", "--from", dir.to_str().unwrap()]);
    let v = json(&out);
    validate("host-v1.json", &v);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["blocked"], true);
    let block = finding(&v, "windows_interface_rule", "wt0");
    assert_eq!(block["status"], "blocked");
    assert!(
        block["deciding"]
            .as_str()
            .unwrap()
            .contains("Block inbound from CGNAT ranges"),
        "{block:#}"
    );
    let eset = finding(&v, "security_software", "ESET");
    assert_eq!(eset["status"], "uncertain");
    assert!(!eset["fix"]["commands"].as_array().unwrap().is_empty());
    assert!(
        v["security_products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "firewall" && p["name"] == "ESET Security")
    );
    // The eight cmdlet files were read, nothing else.
    let read: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["read"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(read.len(), 8, "{read:?}");
    assert!(read.iter().all(|n| n.starts_with("windows-")), "{read:?}");
}

#[test]
fn windows_cmdlet_json_without_problems_passes_and_the_text_names_no_enum() {
    let dir = fixtures().join("windows-ok");
    let out = stunmap(&["host", "--json", "--from", dir.to_str().unwrap()]);
    let v = json(&out);
    validate("host-v1.json", &v);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["blocked"], false);
    assert_eq!(
        finding(&v, "windows_interface_rule", "wt0")["status"],
        "ok",
        "{v:#}"
    );

    let human = stunmap(&["host", "-q", "--from", dir.to_str().unwrap()]);
    assert_eq!(human.status.code(), Some(0));
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("Security software"), "{text}");
    assert!(text.contains("windows-rules"), "{text}");
    for debug in [
        "WindowsInterfaceRule",
        "SecuritySoftware",
        "Some(",
        "Blocked",
    ] {
        assert!(!text.contains(debug), "{debug:?} in:\n{text}");
    }
}

/// UFW's defaults saved from a real host, with a process list showing an endpoint agent.
#[test]
fn linux_saved_files_with_an_agent_validate_and_block() {
    let s = Scratch::new("linux");
    let f = fixtures();
    std::fs::copy(
        f.join("ufw-default-iptables-save.txt"),
        s.0.join("iptables-save.txt"),
    )
    .unwrap();
    std::fs::copy(f.join("ufw-default-status.txt"), s.0.join("ufw-status.txt")).unwrap();
    std::fs::write(
        s.0.join("processes.txt"),
        "    1 /sbin/init\n  812 /opt/CrowdStrike/falcon-sensor\n  901 sshd: /usr/sbin/sshd -D\n",
    )
    .unwrap();
    let prom = s.0.join("host.prom");
    let html = s.0.join("host.html");
    let out = stunmap(&[
        "host",
        "--json",
        "--from",
        s.path(),
        "--prom",
        prom.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let v = json(&out);
    validate("host-v1.json", &v);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let tcp = finding(&v, "tunnel", "TCP");
    assert_eq!(tcp["status"], "blocked");
    assert_eq!(tcp["evaluation"]["verdict"], "drop");
    assert!(tcp["fix"]["commands"][0].as_str().unwrap().contains("ufw"));
    let agents = v["endpoint_agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{v:#}");
    assert_eq!(agents[0]["product"], "CrowdStrike Falcon");
    finding(&v, "security_software", "CrowdStrike Falcon");

    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("stunmap_host_blocked{interface=\"wt0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stunmap_host_findings{status=\"blocked\"}"),
        "{metrics}"
    );
    let human = stunmap(&["host", "-q", "--from", s.path()]);
    let text = String::from_utf8(human.stdout).unwrap();
    // TCP and UDP on the tunnel share one fix: listed once.
    assert_eq!(
        text.matches("Accept new inbound traffic on wt0").count(),
        1,
        "{text}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Host firewall") && page.contains("CrowdStrike Falcon"));
}

/// The live read of this machine: whatever its firewall says, the report is well formed, the
/// process list was read and every Linux tool is accounted for.
#[cfg(target_os = "linux")]
#[test]
fn the_live_read_of_this_host_validates() {
    let out = stunmap(&["host", "--json"]);
    let v = json(&out);
    validate("host-v1.json", &v);
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "{code}: {v:#}");
    assert_eq!(v["exit_code"], code);
    let sources = v["sources"].as_array().unwrap();
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "nft",
            "iptables",
            "ip6tables",
            "ufw",
            "firewalld",
            "processes"
        ]
    );
    assert_eq!(sources[5]["read"], true, "{v:#}");
}

#[test]
fn ndjson_ends_with_the_report_event() {
    let dir = fixtures().join("windows-ok");
    let out = stunmap(&["host", "--ndjson", "--from", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "report", "{last}");
    validate("host-v1.json", &last["report"]);
}

fn usage_error(args: &[&str], says: &str) {
    let out = stunmap(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_flags_and_bad_files_exit_64_with_one_line() {
    usage_error(&["host", "--port", "0"], "--port");
    usage_error(&["host", "--port", "70000"], "--port");
    usage_error(&["host", "--wg-port", "0"], "--wg-port");
    usage_error(&["host", "--wg-ports", "0-10"], "--wg-ports");
    usage_error(&["host", "--wg-ports", "9-3"], "--wg-ports");
    usage_error(&["host", "--subnet", "100.64.0.0/99"], "--subnet");
    usage_error(&["host", "--interface", "a/b"], "--interface");
    usage_error(
        &["host", "--from", "/nonexistent/stunmap"],
        "not a directory",
    );

    let empty = Scratch::new("empty");
    usage_error(&["host", "--from", empty.path()], "holds none of");

    // Rules without the filter files their conditions live in cannot be judged.
    let half = Scratch::new("half");
    std::fs::copy(
        fixtures().join("windows-ok/windows-rules.json"),
        half.0.join("windows-rules.json"),
    )
    .unwrap();
    usage_error(
        &["host", "--from", half.path()],
        "windows-port-filters.json",
    );

    // A hostile file: not JSON at all, and one larger than the cap (sparse, no disk used).
    let bad = Scratch::new("bad");
    std::fs::write(bad.0.join("nft.json"), b"\x00\xff{{{{").unwrap();
    usage_error(&["host", "--from", bad.path()], "nft.json");
    // A FIFO would block the read forever.
    #[cfg(unix)]
    {
        let fifo = Scratch::new("fifo");
        let path = fifo.0.join("iptables-save.txt");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        usage_error(&["host", "--from", fifo.path()], "not a regular file");
    }
    let huge = Scratch::new("huge");
    let f = std::fs::File::create(huge.0.join("iptables-save.txt")).unwrap();
    f.set_len(65 << 20).unwrap();
    drop(f);
    usage_error(&["host", "--from", huge.path()], "larger than");
}

/// A rule name and a product name from a hostile host reach the terminal escaped.
#[test]
fn names_from_the_sources_are_escaped_on_the_terminal() {
    let s = Scratch::new("hostile");
    let src = fixtures().join("windows-problems");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), s.0.join(entry.file_name())).unwrap();
    }
    let edit = |file: &str, from: &str, to: &str| {
        let path = s.0.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    edit(
        "windows-rules.json",
        "Block inbound from CGNAT ranges",
        "Block \\u001b]0;pwned\\u0007 \\u202e CGNAT",
    );
    edit(
        "windows-firewall-products.json",
        "ESET Security",
        "ESET \\u001b[2J Security",
    );
    let out = stunmap(&["host", "-q", "--from", s.path()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Block \\u{1b}]0;pwned\\u{7} \\u{202e} CGNAT"),
        "{text}"
    );
    assert!(text.contains("ESET \\u{1b}[2J Security"), "{text}");
    assert!(!text.contains(['\u{1b}', '\u{7}', '\u{202e}']), "{text}");
}

/// SIGINT while a tool hangs: the run stops at once, exit 130 with the report marked
/// interrupted, and the tool is killed rather than left running.
#[cfg(unix)]
#[test]
fn sigint_while_a_tool_hangs_stops_the_run_and_kills_the_tool() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let s = Scratch::new("sigint");
    let pidfile = s.0.join("nft.pid");
    let fake = s.0.join("nft");
    // The PATH below holds only the fake: `sleep` by its full path.
    let sleep = Command::new("sh")
        .args(["-c", "command -v sleep"])
        .output()
        .unwrap();
    let sleep = String::from_utf8(sleep.stdout).unwrap();
    let sleep = sleep.trim();
    assert!(sleep.starts_with('/'), "{sleep:?}");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec {sleep} 20\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = Command::new(crate::common::bin())
        .args(["host", "--json"])
        // Only the hanging `nft` on the PATH: the other tools are "not installed".
        .env("PATH", s.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pid, once the fake has written it whole.
    let waited = Instant::now();
    let tool: i32 = loop {
        let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if pid.ends_with('\n')
            && let Ok(pid) = pid.trim().parse()
        {
            break pid;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "nft never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        Path::new(&format!("/proc/{tool}")).exists(),
        "the fake tool is not running"
    );
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert_eq!(out.status.code(), Some(130));
    let v = json(&out);
    validate("host-v1.json", &v);
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["exit_code"], 130);
    assert!(v["notes"][0].as_str().unwrap().contains("stopped"), "{v:#}");
    assert!(
        !Path::new(&format!("/proc/{tool}")).exists(),
        "the hanging tool (pid {tool}) still runs"
    );
}
