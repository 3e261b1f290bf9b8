//! The binding-lifetime test and the gateway port-mapping probe in the namespace lab, against
//! the real kernel NAT (with its UDP conntrack timeout shortened in the router namespace, a
//! per-namespace sysctl) and against Debian's miniupnpd in the router namespace.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::bin;
use crate::lab_or_skip;
use crate::support::lab::{Lab, NatMode, Ns, ROUTER_LAN_IP};

fn nat_json(lab: &Lab, args: &[&str]) -> Value {
    let mut cmd = vec!["timeout", "60", bin(), "nat"];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["--rto", "150", "--json"]);
    let out = lab.exec_in(Ns::Client, &cmd).expect("run stunmap nat");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    crate::common::validate("nat-v1.json", &v);
    v
}

/// Conntrack's UDP timeouts in the router namespace (both the unreplied and the "stream"
/// value, so whichever applies, the mapping lives `secs`).
fn shorten_udp_timeout(lab: &Lab, secs: u32) {
    for name in [
        "nf_conntrack_udp_timeout",
        "nf_conntrack_udp_timeout_stream",
    ] {
        lab.exec_ok(
            Ns::Router,
            &["sysctl", "-qw", &format!("net.netfilter.{name}={secs}")],
        )
        .expect("sysctl in the router namespace");
    }
}

#[test]
fn lifetime_of_a_masquerade_mapping_with_a_3_second_conntrack_timeout() {
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    shorten_udp_timeout(&lab, 3);
    let server = lab.start_reflector(bin()).expect("reflector");
    let start = Instant::now();
    let v = nat_json(
        &lab,
        &[&server, "--lifetime", "--lifetime-max", "8", "--no-portmap"],
    );
    let took = start.elapsed();
    let l = &v["ipv4"]["binding_lifetime"];
    assert_eq!(l["kind"], "bounded", "{v:#}");
    let lower = l["survives_at_least"].as_f64().unwrap();
    let upper = l["expires_within"].as_f64().unwrap();
    let keepalive = l["recommended_keepalive"].as_f64().unwrap();
    assert!((1.5..=3.2).contains(&lower), "lower bound {lower}: {l:#}");
    assert!((2.8..=5.0).contains(&upper), "upper bound {upper}: {l:#}");
    assert!(keepalive <= lower * 2.0 / 3.0 + 1e-9, "{l:#}");
    // The run stops after the first expiry: well before the 8 s maximum plus a schedule.
    assert!(took < Duration::from_secs(12), "{took:?}");
    let reasons = v["verdict"]["reasons"].to_string();
    assert!(reasons.contains("WireGuard keepalive"), "{reasons}");
}

#[test]
fn lifetime_with_the_default_timeout_outlives_a_short_maximum() {
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    let server = lab.start_reflector(bin()).expect("reflector");
    let v = nat_json(
        &lab,
        &[&server, "--lifetime", "--lifetime-max", "3", "--no-portmap"],
    );
    let l = &v["ipv4"]["binding_lifetime"];
    assert_eq!(l["kind"], "at-least", "{v:#}");
    assert!(l["survives_at_least"].as_f64().unwrap() >= 3.0, "{l:#}");
}

/// miniupnpd in the router namespace, listening on the LAN side, external interface wan0,
/// NAT-PMP/PCP and UPnP on. Its tables get their own names (the lab's NAT uses iptables).
fn start_miniupnpd(lab: &mut Lab) -> Result<(), String> {
    if std::process::Command::new("miniupnpd")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("miniupnpd not installed (apt-get install miniupnpd)".into());
    }
    let dir = lab.dir().to_string_lossy().into_owned();
    let conf = "ext_ifname=wan0\nlistening_ip=lan1\nport=0\nenable_natpmp=yes\nenable_upnp=yes\n\
         secure_mode=no\nsystem_uptime=yes\nuuid=3b1f1e2a-5c1d-4a63-9d1e-7f00c0ffee01\n\
         upnp_table_name=stunmap_upnp\nupnp_nat_table_name=stunmap_upnp\n\
         allow 1024-65535 100.64.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n";
    let path = lab.dir().join("miniupnpd.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let path = path.to_string_lossy().into_owned();
    let pid = format!("{dir}/miniupnpd.pid");
    lab.spawn_in(Ns::Router, &["miniupnpd", "-d", "-f", &path, "-P", &pid])
        .map_err(|e| e.to_string())?;
    lab.wait_udp_listener(
        Ns::Router,
        &format!("{ROUTER_LAN_IP}:5351"),
        Duration::from_secs(5),
    )
}

#[test]
fn miniupnpd_on_the_gateway_is_found() {
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    if let Err(why) = start_miniupnpd(&mut lab) {
        crate::support::lab::report_skip(module_path!(), &why);
        return;
    }
    let server = lab.start_reflector(bin()).expect("reflector");
    let v = nat_json(&lab, &[&server]);
    let pm = &v["measurements"]["port_mapping"];
    assert_eq!(pm["gateway"], ROUTER_LAN_IP, "{pm:#}");
    // miniupnpd refuses to serve a reserved external address (the lab's 198.18.0.1): NAT-PMP
    // answers with result 3, network failure. It answered, over real packets.
    assert_eq!(pm["nat_pmp"]["status"], "refused", "{pm:#}");
    assert_eq!(pm["nat_pmp"]["code"], 3, "{pm:#}");
    assert_eq!(pm["pcp"]["status"], "available", "{pm:#}");
    assert_eq!(pm["upnp"]["status"], "available", "{pm:#}");
    let services = pm["upnp"]["services"].to_string();
    assert!(services.contains("WANIPConnection"), "{services}");
    assert!(
        pm["upnp"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://{ROUTER_LAN_IP}:")),
        "{pm:#}"
    );
    let reasons = v["verdict"]["reasons"].to_string();
    assert!(reasons.contains("offers port mapping"), "{reasons}");
    assert!(reasons.contains("network failure"), "{reasons}");
}

#[test]
fn no_port_mapping_without_miniupnpd() {
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    let server = lab.start_reflector(bin()).expect("reflector");
    let v = nat_json(&lab, &[&server]);
    let pm = &v["measurements"]["port_mapping"];
    assert_eq!(pm["gateway"], ROUTER_LAN_IP, "{pm:#}");
    assert_eq!(pm["nat_pmp"]["status"], "unreachable", "{pm:#}");
    assert_eq!(pm["pcp"]["status"], "unreachable", "{pm:#}");
    assert_eq!(pm["upnp"]["status"], "no-answer", "{pm:#}");
    let reasons = v["verdict"]["reasons"].to_string();
    assert!(reasons.contains("no port mapping"), "{reasons}");
}
