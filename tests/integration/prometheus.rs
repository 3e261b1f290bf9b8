//! A real Prometheus (Debian's package) on loopback scrapes `stunmap serve --metrics`: the
//! blackbox-style /probe job with the usual relabelling, and /metrics. The series must arrive
//! in Prometheus, read back through its HTTP API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Guard, free_port, have, serve};

pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The values of an instant query, as (labels, value).
fn query(port: u16, q: &str) -> Vec<(Value, String)> {
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let Some(body) = http_get(port, &format!("/api/v1/query?query={enc}")) else {
        return Vec::new();
    };
    // Prometheus answers chunked or not depending on size; take the JSON object itself.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|e| e + 1).unwrap_or(body.len());
    let Ok(v) = serde_json::from_str::<Value>(&body[start..end]) else {
        return Vec::new();
    };
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["metric"].clone(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_probe_and_self_metrics() {
    if !have("prometheus") {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "stunmap-prom-{}-{}",
        std::process::id(),
        free_port("127.0.0.1")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let stun = free_port("127.0.0.1");
    let alt = free_port("127.0.0.1");
    let metrics = free_port("127.0.0.1");
    let profile = dir.join("lab.toml");
    std::fs::write(
        &profile,
        format!(
            "version = 1\nname = \"lab\"\n[[service]]\nname = \"P2P (STUN)\"\nkind = \"stun\"\nhosts = [\"stun.lab.test\"]\nudp = [{stun}]\n"
        ),
    )
    .unwrap();
    let _serve = serve(&[
        "--listen",
        &format!("127.0.0.1:{stun}"),
        "--alt-address",
        "127.0.0.2",
        "--alt-port",
        &alt.to_string(),
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
        "--module",
        &format!("lab={}", profile.display()),
        "--probe-timeout",
        "500",
        // The probe server refuses loopback targets unless allowed.
        "--probe-allow",
        "127.0.0.0/8",
    ]);
    let web = free_port("127.0.0.1");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: stunmap_probe\n\
             \x20   metrics_path: /probe\n\
             \x20   params:\n\
             \x20     module: [lab]\n\
             \x20   static_configs:\n\
             \x20     - targets: ['127.0.0.1']\n\
             \x20   relabel_configs:\n\
             \x20     - source_labels: [__address__]\n\
             \x20       target_label: __param_target\n\
             \x20     - source_labels: [__param_target]\n\
             \x20       target_label: instance\n\
             \x20     - target_label: __address__\n\
             \x20       replacement: 127.0.0.1:{metrics}\n\
             \x20 - job_name: stunmap\n\
             \x20   static_configs:\n\
             \x20     - targets: ['127.0.0.1:{metrics}']\n"
        ),
    )
    .unwrap();
    let _prom = Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let start = Instant::now();
    loop {
        let probe = query(web, "stunmap_check_success{job=\"stunmap_probe\"}");
        let own = query(
            web,
            "stunmap_probes_total{job=\"stunmap\",module=\"lab\",result=\"ok\"}",
        );
        let done = probe
            .iter()
            .any(|(m, v)| m["instance"] == "127.0.0.1" && v == "1")
            && own
                .iter()
                .any(|(_, v)| v.parse::<f64>().unwrap_or(0.0) >= 1.0);
        if done {
            // A per-port series with its labels arrived too.
            let rtt = query(
                web,
                "stunmap_probe_rtt_seconds{job=\"stunmap_probe\",probe=\"stun\"}",
            );
            assert!(
                rtt.iter()
                    .any(|(m, _)| m["port"] == stun.to_string().as_str() && m["transport"] == "udp"),
                "{rtt:?}"
            );
            // Prometheus asked for OpenMetrics and got it: the counter's family is
            // `stunmap_probes` (the classic format would have named it with `_total`).
            let meta = http_get(web, "/api/v1/metadata?metric=stunmap_probes").unwrap_or_default();
            assert!(meta.contains("\"type\":\"counter\""), "{meta}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "series never arrived in Prometheus: {probe:?} {own:?}\n{}\ntargets: {:?}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default(),
            http_get(web, "/api/v1/targets")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
