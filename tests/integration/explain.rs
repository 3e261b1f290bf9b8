//! `stunmap explain` on the bundle fixture (tests/fixtures/netbird/bundle), as a folder and as
//! a zip built here from it, and on hostile archives: JSON against docs/schema/explain-v1.json,
//! exit codes, no public key in the output, one-line errors.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BUNDLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/netbird/bundle");

fn explain(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stunmap"))
        .arg("explain")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn validate(v: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/schema/explain-v1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}\n{v:#}");
}

/// A zip of `files`, stored (method 0), as APPNOTE.TXT lays it out.
fn zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut cd) = (Vec::new(), Vec::new());
    for (name, data) in files {
        let off = out.len() as u32;
        let crc = crc32(data);
        let (n, sz) = (name.len() as u16, data.len() as u32);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        for v in [crc, sz, sz] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        for v in [crc, sz, sz] {
            cd.extend_from_slice(&v.to_le_bytes());
        }
        cd.extend_from_slice(&n.to_le_bytes());
        cd.extend_from_slice(&[0; 12]);
        cd.extend_from_slice(&off.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    let c = files.len() as u16;
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn folder_files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(BUNDLE)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A temporary file, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str, bytes: &[u8]) -> Tmp {
        let p =
            std::env::temp_dir().join(format!("stunmap-explain-{tag}-{}.zip", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        Tmp(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn no_keys(out: &str) {
    for f in folder_files() {
        if f.0 == "status.txt" {
            let text = String::from_utf8(f.1).unwrap();
            for key in text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Public key: "))
            {
                assert!(!out.contains(key), "public key {key} printed");
            }
        }
    }
}

#[test]
fn folder_report_matches_the_schema_and_explains_each_relayed_peer() {
    let (code, out, err) = explain(&[BUNDLE, "--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    validate(&v);
    assert_eq!(v["netbird_version"], "0.71.0");
    assert_eq!(v["wireguard_port"], 51820);
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0]["reason"], "peer_filters");
    assert_eq!(peers[0]["ice_log"]["checking_to_failed"], 3);
    assert_eq!(peers[1]["reason"], "peer_no_srflx");
    assert_eq!(v["routes"][0]["kind"], "network_into_tunnel");
    let hf = v["host_firewall"]["findings"].as_array().unwrap();
    let wg = hf
        .iter()
        .find(|f| f["subject"].as_str().unwrap().contains("port 51820 "))
        .unwrap();
    assert_eq!(
        wg["fix"]["commands"][0],
        "sudo iptables -t filter -I INPUT -p udp --dport 51820 -j ACCEPT"
    );
    no_keys(&out);
    let (code, human, _) = explain(&[BUNDLE]);
    assert_eq!(code, 1);
    assert!(human.starts_with("FINDINGS  Findings: 2 peers"), "{human}");
    assert!(
        human.lines().any(|l| l.trim_start().starts_with("why ")
            && l.contains("both sides have srflx but the checks failed")),
        "{human}"
    );
    no_keys(&human);
}

#[test]
fn zip_built_from_the_folder_reads_the_same() {
    let files = folder_files();
    let entries: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let z = Tmp::new("ok", &zip(&entries));
    let (code, out, err) = explain(&[z.path(), "--json"]);
    assert_eq!(code, 1, "{err}");
    let from_zip: Value = serde_json::from_str(&out).unwrap();
    validate(&from_zip);
    let (_, out, _) = explain(&[BUNDLE, "--json"]);
    let from_dir: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(from_zip["peers"], from_dir["peers"]);
    assert_eq!(from_zip["host_firewall"], from_dir["host_firewall"]);

    // Traversal entries are ignored (and nothing is ever extracted).
    let mut hostile = entries.clone();
    hostile.push(("../../../tmp/stunmap-pwned", b"x".to_vec()));
    hostile.push(("/etc/cron.d/stunmap", b"x".to_vec()));
    let z = Tmp::new("trav", &zip(&hostile));
    let (code, out, _) = explain(&[z.path(), "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("`..`"))
    );
    assert!(!std::path::Path::new("/tmp/stunmap-pwned").exists());
}

#[test]
fn bad_bundles_are_one_line_errors_with_exit_64() {
    let files = folder_files();
    let entries: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let good = zip(&entries);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trunc", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "other",
            zip(&[("index.html", b"<html>".to_vec())]),
            "not a NetBird debug bundle",
        ),
        ("text", b"just some text\n".to_vec(), "not a zip"),
        ("empty", Vec::new(), "not a zip"),
    ];
    for (tag, bytes, want) in cases {
        let z = Tmp::new(tag, &bytes);
        let (code, out, err) = explain(&[z.path()]);
        assert_eq!(code, 64, "{tag}: {out}{err}");
        assert!(err.contains(want), "{tag}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{tag}: {err}");
    }
    let (code, _, err) = explain(&["/nonexistent/bundle.zip"]);
    assert_eq!(code, 64);
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn hostile_names_in_a_bundle_reach_no_terminal_or_page_raw() {
    // The peer's name carries escape sequences (retitle, clear) and is 5,000 characters long.
    let evil = format!("office-gw\u{1b}]0;pwned\u{7}\u{1b}[2J{}", "A".repeat(5000));
    let dir = std::env::temp_dir().join(format!("stunmap-explain-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in folder_files() {
        let bytes = if name == "status.txt" {
            String::from_utf8(bytes)
                .unwrap()
                .replace("office-gw", &evil)
                .into_bytes()
        } else {
            bytes
        };
        std::fs::write(dir.join(&name), bytes).unwrap();
    }
    let page = dir.join("report.html");
    let (code, human, err) = explain(&[dir.to_str().unwrap(), "--html", page.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    for (what, text, limit) in [("terminal", &human, 24 * 1024), ("HTML", &html, 64 * 1024)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: raw control characters:\n{}",
            text.escape_debug()
        );
        assert!(text.contains("\\u{1b}]0;pwned\\u{7}"), "{what}: {text}");
        assert!(text.len() < limit, "{what}: {} bytes", text.len());
    }
    let (_, out, _) = explain(&[dir.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    validate(&v);
    crate::common::validate("explain-v1.json", &v);
    let _ = std::fs::remove_dir_all(&dir);
}
