//! `stunmap nat` inside the namespace lab, against `stunmap serve` on two public addresses,
//! behind each kind of kernel NAT and egress firewall the lab builds. The reference test
//! (`lab_reference`) proves each mode is what it claims with coturn's own client first.

use serde_json::Value;

use crate::common::bin;
use crate::lab_or_skip;
use crate::support::lab::{CLIENT_IP, Lab, NatMode, Ns, PUBLIC_IP_2};

/// Start the RFC 5780 reflector in the public namespace and run `stunmap nat` in the client.
fn nat_in(mut lab: Lab) -> (Value, Option<i32>) {
    let listen = lab.start_reflector(bin()).expect("reflector");
    let out = lab
        .exec_in(
            Ns::Client,
            &[
                "timeout",
                "30",
                bin(),
                "nat",
                &listen,
                &format!("{PUBLIC_IP_2}:3479"),
                "--rto",
                "150",
                "--json",
            ],
        )
        .expect("run stunmap nat");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{:?}: not JSON ({e}): {text}\n{}",
            lab.mode(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code())
}

fn v4(v: &Value) -> &Value {
    &v["ipv4"]
}

#[test]
fn masquerade_is_endpoint_independent_mapping_with_port_dependent_filtering() {
    let lab = lab_or_skip!(NatMode::Masquerade);
    let (v, code) = nat_in(lab);
    let r = v4(&v);
    assert_eq!(r["nat"], "present", "{v:#}");
    assert_eq!(r["mapping"], "endpoint-independent", "{v:#}");
    assert_eq!(r["filtering"], "address-and-port-dependent", "{v:#}");
    assert_eq!(r["port_preservation"], true, "{v:#}");
    let public = r["public_address"].as_str().unwrap();
    assert!(
        public.starts_with("198.18.0.1:"),
        "mapped to the router's WAN address: {public}"
    );
    assert_eq!(v["verdict"]["level"], "direct-with-eim", "{v:#}");
    assert_eq!(code, Some(1));
}

#[test]
fn random_fully_is_address_and_port_dependent_mapping() {
    let lab = lab_or_skip!(NatMode::MasqueradeRandomFully);
    let (v, code) = nat_in(lab);
    let r = v4(&v);
    assert_eq!(r["nat"], "present", "{v:#}");
    assert_eq!(r["mapping"], "address-and-port-dependent", "{v:#}");
    assert_eq!(r["filtering"], "address-and-port-dependent", "{v:#}");
    assert_eq!(
        v["verdict"]["level"], "direct-with-permissive-peers",
        "{v:#}"
    );
    // Symmetric on this side and symmetric on the peer's: only a relay.
    let peers = v["verdict"]["peers"].as_array().unwrap();
    let sym = peers
        .iter()
        .find(|p| p["label"].as_str().unwrap().starts_with("symmetric"))
        .unwrap();
    assert_eq!(sym["outcome"], "relayed", "{v:#}");
    assert_eq!(code, Some(1));
}

#[test]
fn full_cone_is_endpoint_independent_filtering() {
    let lab = lab_or_skip!(NatMode::FullCone);
    let (v, code) = nat_in(lab);
    let r = v4(&v);
    assert_eq!(r["nat"], "present", "{v:#}");
    assert_eq!(r["mapping"], "endpoint-independent", "{v:#}");
    assert_eq!(r["filtering"], "endpoint-independent", "{v:#}");
    assert_eq!(v["verdict"]["level"], "direct", "{v:#}");
    assert_eq!(code, Some(0));
}

#[test]
fn no_nat_is_reported_as_such() {
    let lab = lab_or_skip!(NatMode::NoNat);
    let (v, _) = nat_in(lab);
    let r = v4(&v);
    assert_eq!(r["nat"], "absent", "{v:#}");
    assert!(
        r["filtering"].is_null(),
        "no NAT has no NAT filtering class: {v:#}"
    );
    let public = r["public_address"].as_str().unwrap();
    assert!(public.starts_with(&format!("{CLIENT_IP}:")), "{public}");
}

#[test]
fn udp_blocked_is_relay_territory() {
    let lab = lab_or_skip!(NatMode::UdpBlockedTcp443Open);
    let (v, code) = nat_in(lab);
    assert_eq!(v4(&v)["udp"]["status"], "blocked", "{v:#}");
    let level = v["verdict"]["level"].as_str().unwrap();
    assert!(level == "relay-only" || level == "blocked", "{v:#}");
    assert_ne!(code, Some(0));
}

#[test]
fn udp_only_to_3478_is_a_port_restriction() {
    let lab = lab_or_skip!(NatMode::UdpOnly3478);
    let (v, code) = nat_in(lab);
    let udp = &v4(&v)["udp"];
    assert_eq!(udp["status"], "ports-restricted", "{v:#}");
    assert_eq!(udp["open"], serde_json::json!([3478]), "{v:#}");
    assert_eq!(udp["blocked"], serde_json::json!([3479]), "{v:#}");
    assert_ne!(code, Some(0));
}
