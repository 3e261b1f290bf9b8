//! `stunmap nat` inside the namespace lab, against `stunmap serve` on two public addresses,
//! behind each kind of kernel NAT and egress firewall the lab builds. The reference test
//! (`lab_reference`) proves each mode is what it claims with coturn's own client first.
//! Every JSON report is validated against docs/schema/nat-v1.json.

use serde_json::Value;

use crate::common::{bin, validate};
use crate::lab_or_skip;
use crate::support::lab::{CLIENT_IP, Lab, NatMode, Ns, PUBLIC_IP_2};

/// Well above the ~0.5 s the lab's modes take (BENCHMARKS.md), well below the 5.5 s of the
/// fixed schedule this replaced: a slow machine passes, a return of fixed waits does not.
const VERDICT_BOUND: f64 = 2.0;

/// What `stunmap nat SERVER1 SERVER2` must conclude behind each mode: NAT presence, mapping,
/// filtering, UDP status and verdict level (JSON spellings; `null` where there is no class).
pub(crate) fn expected(mode: NatMode) -> [Value; 5] {
    use serde_json::json;
    let (nat, mapping, filtering, udp, level) = match mode {
        NatMode::Masquerade | NatMode::HomeRouter => (
            "present",
            json!("endpoint-independent"),
            json!("address-and-port-dependent"),
            "open",
            "direct-with-eim",
        ),
        NatMode::MasqueradeRandomFully => (
            "present",
            json!("address-and-port-dependent"),
            json!("address-and-port-dependent"),
            "open",
            "direct-with-permissive-peers",
        ),
        NatMode::FullCone => (
            "present",
            json!("endpoint-independent"),
            json!("endpoint-independent"),
            "open",
            "direct",
        ),
        NatMode::RestrictedCone => (
            "present",
            json!("endpoint-independent"),
            json!("address-dependent"),
            "open",
            "direct",
        ),
        NatMode::NoNat => ("absent", Value::Null, Value::Null, "open", "direct"),
        NatMode::UdpBlockedTcp443Open => {
            ("unknown", Value::Null, Value::Null, "blocked", "relay-only")
        }
        NatMode::UdpOnly3478 => (
            "present",
            json!("endpoint-independent"),
            json!("unknown"),
            "ports-restricted",
            "relay-only",
        ),
    };
    [json!(nat), mapping, filtering, json!(udp), json!(level)]
}

/// The same five facts of a report.
pub(crate) fn concluded(v: &Value) -> [Value; 5] {
    let r = &v["ipv4"];
    [
        r["nat"].clone(),
        r["mapping"].clone(),
        r["filtering"].clone(),
        r["udp"]["status"].clone(),
        v["verdict"]["level"].clone(),
    ]
}

/// `stunmap nat` in the client namespace, with `extra` flags; its JSON and exit code.
pub(crate) fn nat_json(lab: &Lab, server: &str, extra: &[&str]) -> (Value, Option<i32>) {
    let alt = format!("{PUBLIC_IP_2}:3479");
    let mut cmd = vec!["timeout", "30", bin(), "nat", server, &alt, "--json"];
    cmd.extend_from_slice(extra);
    let out = lab.exec_in(Ns::Client, &cmd).expect("run stunmap nat");
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

/// Start the RFC 5780 reflector in the public namespace and run `stunmap nat` in the client;
/// the report is checked against the schema and the mode's expected classes.
fn nat_in(mut lab: Lab) -> (Value, Option<i32>) {
    let listen = lab.start_reflector(bin()).expect("reflector");
    let (v, code) = nat_json(&lab, &listen, &[]);
    validate("nat-v1.json", &v);
    assert_eq!(
        concluded(&v),
        expected(lab.mode()),
        "{:?}: {v:#}",
        lab.mode()
    );
    let took = v["timing"]["verdict_seconds"].as_f64().unwrap();
    assert!(
        took < VERDICT_BOUND,
        "{:?}: verdict in {took} s",
        lab.mode()
    );
    (v, code)
}

fn v4(v: &Value) -> &Value {
    &v["ipv4"]
}

#[test]
fn masquerade_is_endpoint_independent_mapping_with_port_dependent_filtering() {
    let lab = lab_or_skip!(NatMode::Masquerade);
    let (v, code) = nat_in(lab);
    let r = v4(&v);
    assert_eq!(r["port_preservation"], true, "{v:#}");
    assert!(r["hairpinning"].is_null(), "hairpinning is opt-in: {v:#}");
    assert_eq!(v["hairpin_tested"], false);
    let public = r["public_address"].as_str().unwrap();
    assert!(
        public.starts_with("198.18.0.1:"),
        "mapped to the router's WAN address: {public}"
    );
    // The first answer puts the waits at the floor: the silent filtering tests are done in
    // five 100 ms RTOs, not the blind 500 ms ones.
    let t = &v["measurements"]["ipv4"]["timing"];
    assert_eq!(t["rtt_source"], "udp", "{t:#}");
    assert_eq!(t["rto_seconds"], 0.1, "{t:#}");
    assert_eq!(t["budget_reached"], false, "{t:#}");
    let f2 = &v["measurements"]["ipv4"]["discovery"]["filtering_ii"];
    assert_eq!(f2["status"]["kind"], "timeout");
    assert_eq!(f2["transmissions"], 5);
    assert_eq!(code, Some(1));
}

#[test]
fn random_fully_is_address_and_port_dependent_mapping() {
    let lab = lab_or_skip!(NatMode::MasqueradeRandomFully);
    let (v, code) = nat_in(lab);
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
    let (_, code) = nat_in(lab);
    assert_eq!(code, Some(0));
}

#[test]
fn restricted_cone_is_address_dependent_filtering() {
    let lab = lab_or_skip!(NatMode::RestrictedCone);
    let (v, code) = nat_in(lab);
    assert_eq!(v4(&v)["nat_type"]["filtering"], "address-dependent");
    assert_eq!(code, Some(0));
}

#[test]
fn a_home_router_dropping_unsolicited_packets_is_port_restricted() {
    let lab = lab_or_skip!(NatMode::HomeRouter);
    let (v, _) = nat_in(lab);
    assert_eq!(v4(&v)["port_preservation"], true, "{v:#}");
}

#[test]
fn no_nat_is_reported_as_such() {
    let lab = lab_or_skip!(NatMode::NoNat);
    let (v, _) = nat_in(lab);
    let r = v4(&v);
    let public = r["public_address"].as_str().unwrap();
    assert!(public.starts_with(&format!("{CLIENT_IP}:")), "{public}");
    assert_eq!(r["firewall_filtering"], "endpoint-independent", "{v:#}");
}

#[test]
fn udp_blocked_is_judged_on_a_tcp_round_trip() {
    let lab = lab_or_skip!(NatMode::UdpBlockedTcp443Open);
    let (v, code) = nat_in(lab);
    // Nothing answered over UDP; the connect to TCP 443 did (a RST: nothing listens there),
    // and its round trip set the waits.
    let t = &v["measurements"]["ipv4"]["timing"];
    assert_eq!(t["rtt_source"], "tcp", "{t:#}");
    assert_eq!(t["rto_seconds"], 0.1, "{t:#}");
    assert_ne!(code, Some(0));
}

#[test]
fn udp_only_to_3478_is_a_port_restriction() {
    let lab = lab_or_skip!(NatMode::UdpOnly3478);
    let (v, code) = nat_in(lab);
    let udp = &v4(&v)["udp"];
    assert_eq!(udp["open"], serde_json::json!([3478]), "{v:#}");
    assert_eq!(udp["blocked"], serde_json::json!([3479]), "{v:#}");
    assert_ne!(code, Some(0));
}

#[test]
fn hairpinning_runs_only_when_asked() {
    let mut lab = lab_or_skip!(NatMode::Masquerade);
    let listen = lab.start_reflector(bin()).expect("reflector");
    let (v, _) = nat_json(&lab, &listen, &["--hairpin", "--no-portmap"]);
    validate("nat-v1.json", &v);
    assert_eq!(v["hairpin_tested"], true);
    // Linux MASQUERADE does not hairpin without a DNAT rule for it.
    assert_eq!(v4(&v)["hairpinning"], false, "{v:#}");
    assert_eq!(
        v["measurements"]["ipv4"]["discovery"]["hairpin"]["result"],
        "not-received"
    );
}

/// Words that only a `{:?}` of an enum would print.
const DEBUG_WORDS: [&str; 12] = [
    "Ipv4",
    "Ipv6",
    "Rfc5780",
    "MultiServer",
    "Present",
    "Absent",
    "Direct",
    "Relayed",
    "Uncertain",
    "EndpointIndependent",
    "Some(",
    "None",
];

/// Every line but the headline (a sentence may start with "Direct") free of enum names.
pub(crate) fn assert_no_debug_words(text: &str) {
    for line in text.lines().skip(1) {
        for w in DEBUG_WORDS {
            let hit = line.match_indices(w).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + w.len()..].chars().next();
                before.is_none_or(|c| !c.is_alphanumeric())
                    && (w.ends_with('(') || after.is_none_or(|c| !c.is_alphanumeric()))
            });
            assert!(!hit, "{w:?} in {line:?}:\n{text}");
        }
    }
}

#[test]
fn the_human_report_speaks_words_not_enum_names() {
    let mut lab = lab_or_skip!(NatMode::MasqueradeRandomFully);
    let listen = lab.start_reflector(bin()).expect("reflector");
    let alt = format!("{PUBLIC_IP_2}:3479");
    let out = lab
        .exec_in(
            Ns::Client,
            &["timeout", "30", bin(), "nat", &listen, &alt, "--hairpin"],
        )
        .expect("run stunmap nat");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_no_debug_words(&text);
    for words in [
        "IPv4: symmetric (APDM+APDF)",
        "NAT present",
        "address-and-port-dependent mapping (APDM), by RFC 5780 tests",
        "address-and-port-dependent filtering (APDF)",
        "hairpinning",
        "RELAYED",
        "direct",
        "RTT",
        "from UDP answers",
    ] {
        assert!(text.contains(words), "{words:?} missing:\n{text}");
    }
}
