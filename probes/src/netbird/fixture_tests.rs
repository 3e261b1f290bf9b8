//! The NetBird fixtures (`tests/fixtures/netbird/`, docs/netbird.md names their versions)
//! through status import, profile, per-peer reasons and comparison.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::compare::{Agreement, MeasuredState, MeasuredUri, compare};
use super::peers::{Measured, Reason, explain};
use super::status::{CandidateType, ConnectionType, StatusFormat, parse, to_profile};
use super::{bundle, log};
use crate::PortRange;
use crate::nat::NatType;
use crate::profile::{Host, ServiceKind, netbird_cloud};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/netbird/",
            $name
        ))
    };
}

#[test]
fn v071_relayed_peer_without_candidates() {
    let (st, notes) = parse(fixture!("status-0.71-relayed-dashdash.json")).unwrap();
    assert_eq!(st.format, StatusFormat::Json);
    assert_eq!(st.daemon_version.as_deref(), Some("0.71.0"));
    // 0.71.0 does not print wireguardPort: a note, no failure.
    assert_eq!(st.wireguard_port, None);
    assert!(
        notes.iter().any(|n| n.starts_with("wireguardPort")),
        "{notes:?}"
    );
    let p = &st.peers[0];
    assert_eq!(p.link.connection_type, ConnectionType::Relayed);
    assert_eq!(
        (p.link.ice_local.clone(), p.link.ice_remote.clone()),
        (CandidateType::None, CandidateType::None)
    );
    assert_eq!(
        p.link.relay_address.as_deref(),
        Some("rels://streamline-de-fra1-0.relay.netbird.io:443")
    );
    // Keys never reach the serialized form.
    let json = serde_json::to_string(&st).unwrap();
    assert!(
        !json.contains("UHVibGljS2V5") && !json.contains("publicKey"),
        "{json}"
    );

    let np = to_profile(&st, &netbird_cloud().unwrap()).unwrap();
    let kinds: Vec<ServiceKind> = np.profile.services.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ServiceKind::Management,
            ServiceKind::Signal,
            ServiceKind::Stun,
            ServiceKind::Turn,
            ServiceKind::Relay
        ]
    );
    let m = &np.profile.services[0];
    assert_eq!(m.hosts, vec![Host::Name("api.netbird.io".into())]);
    assert_eq!(m.tcp, vec![PortRange::single(443)]);
    // Published addresses carried over from the embedded profile.
    assert_eq!(m.ipv4.len(), 7);
    let turn = &np.profile.services[3];
    assert_eq!(turn.udp, vec![PortRange::single(443)]);
    assert_eq!(turn.tls, vec![443]);
    let relay = &np.profile.services[4];
    assert_eq!(
        relay.hosts,
        vec![Host::Name("streamline-de-fra1-0.relay.netbird.io".into())]
    );

    // Nothing measured, no log: the relayed peer's reason is unknown, the P2P one has none.
    let f = explain(&st, &Measured::default(), None);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].peer, "office-gw.netbird.cloud");
    assert_eq!(f[0].reason, Reason::Unknown);
    // UDP to STUN blocked in this run: that is the reason.
    let m = Measured {
        stun_udp: Some(false),
        ..Measured::default()
    };
    let f = explain(&st, &m, None);
    assert_eq!(f[0].reason, Reason::NoLocalSrflx);
    assert!(
        f[0].detail.starts_with("no srflx candidate on this side"),
        "{}",
        f[0].detail
    );
    assert!(
        f[0].fix
            .as_ref()
            .unwrap()
            .title
            .contains("stun.netbird.io:443")
    );
    // A symmetric NAT here.
    let m = Measured {
        nat: Some(NatType::SYMMETRIC),
        stun_udp: Some(true),
        ..Measured::default()
    };
    let f = explain(&st, &m, None);
    assert_eq!(f[0].reason, Reason::MappingPerDestination);
    assert!(
        f[0].detail.contains("maps per destination") && f[0].detail.contains("no direct path"),
        "{}",
        f[0].detail
    );
}

#[test]
fn newer_version_with_extra_fields_and_srflx_both_sides() {
    let (st, notes) = parse(fixture!("status-newer-relayed-srflx.json")).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(st.wireguard_port, Some(41820));
    assert_eq!(st.relays[2].transport.as_deref(), Some("quic"));
    let np = to_profile(&st, &netbird_cloud().unwrap()).unwrap();
    assert_eq!(np.wireguard_port, Some(41820));
    // Management and signal share one host: two services of different kinds.
    assert_eq!(np.profile.of_kind(ServiceKind::Signal).count(), 1);
    let m = Measured {
        nat: Some(NatType::PORT_RESTRICTED_CONE),
        stun_udp: Some(true),
        ..Measured::default()
    };
    let f = explain(&st, &m, None);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].reason, Reason::PeerFilters);
    assert!(
        f[0].detail
            .starts_with("both sides have srflx but the checks failed"),
        "{}",
        f[0].detail
    );
    assert!(f[0].detail.contains("stunmap pair"));
    assert_eq!(f[1].reason, Reason::Idle);
    assert!(f[1].fix.is_none());
}

#[test]
fn not_connected_with_signal_down() {
    let (st, _) = parse(fixture!("status-not-connected.json")).unwrap();
    let f = explain(&st, &Measured::default(), None);
    assert_eq!(f[0].reason, Reason::SignalDown);
    assert!(f[0].detail.contains("connection error"));
    let rows = compare(
        &st,
        &[
            MeasuredUri {
                uri: "stun:stun.netbird.io:443".into(),
                state: MeasuredState::Ok,
                detail: Some("12 ms".into()),
            },
            MeasuredUri {
                uri: "https://signal.netbird.io".into(),
                state: MeasuredState::Failed,
                detail: None,
            },
        ],
    );
    let stun = rows.iter().find(|r| r.role == "stun").unwrap();
    assert_eq!(stun.agreement, Agreement::StunmapOnly);
    assert!(
        stun.note
            .as_ref()
            .unwrap()
            .contains("context deadline exceeded")
    );
    let signal = rows.iter().find(|r| r.role == "signal").unwrap();
    // `https://signal.netbird.io` is the same URL as `https://signal.netbird.io:443`.
    assert_eq!(signal.agreement, Agreement::Agree);
    let relay = rows.iter().find(|r| r.role == "relay").unwrap();
    assert_eq!(relay.agreement, Agreement::NotMeasured);
}

#[test]
fn connected_direct_has_no_findings() {
    let (st, _) = parse(fixture!("status-connected-direct.json")).unwrap();
    assert!(explain(&st, &Measured::default(), None).is_empty());
}

#[test]
fn bundle_folder_files_status_text_and_log() {
    let b = bundle::Bundle::from_files([
        (
            "status.txt".to_owned(),
            0,
            Some(fixture!("bundle/status.txt").to_vec()),
        ),
        (
            "client.log".to_owned(),
            0,
            Some(fixture!("bundle/client.log").to_vec()),
        ),
    ])
    .unwrap();
    let (st, notes) = parse(b.file("status.txt").unwrap()).unwrap();
    assert_eq!(st.format, StatusFormat::DetailText);
    assert!(notes.iter().any(|n| n.contains("2 snapshots")), "{notes:?}");
    // The pre-down snapshot (the last) is read: peers connected, relayed.
    assert_eq!(st.peers.len(), 3);
    assert_eq!(st.peers[0].link.connection_type, ConnectionType::Relayed);
    assert!(st.peers[0].connected());
    assert_eq!(st.wireguard_port, Some(51820));
    assert_eq!(st.relays.len(), 4);
    assert!(!st.relays[2].available);
    assert_eq!(
        st.relays[2].error.as_deref(),
        Some("context deadline exceeded")
    );
    assert_eq!(st.peers[2].link.ice_local, CandidateType::Srflx);
    assert_eq!(
        st.peers[2].link.endpoint_remote.as_deref(),
        Some("198.51.100.23:51820")
    );
    let h = log::read(&b.text("client.log").unwrap());
    let f = explain(&st, &Measured::default(), Some(&h));
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].reason, Reason::PeerFilters);
    assert!(
        f[0].detail.contains("3× Checking → Failed"),
        "{}",
        f[0].detail
    );
    assert_eq!(f[0].ice_log.as_ref().unwrap().checking_to_failed, 3);
    assert_eq!(f[1].reason, Reason::PeerNoSrflx);
    assert!(f[1].detail.contains("only host"), "{}", f[1].detail);
    let json = serde_json::to_string(&f).unwrap();
    assert!(!json.contains("UHVibGljS2V5"), "{json}");
    // The link's fields are the finding's own in JSON (docs/schema/explain-v1.json).
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v[0]["connection_type"],
        serde_json::to_value(&f[0].link.connection_type).unwrap()
    );
    assert!(
        v[0].get("ice_local").is_some() && v[0].get("link").is_none(),
        "{json}"
    );
}

#[test]
fn bad_status_input_is_one_clear_error() {
    for (input, want) in [
        (&b"\xff\xfe garbage"[..], "not UTF-8"),
        (b"{\"peers\": ", "invalid JSON"),
        (b"[1, 2]", "neither JSON"),
        (b"{\"name\": \"another program\"}", "without peers"),
        (b"hello world\n", "neither JSON"),
    ] {
        let e = parse(input).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains('\n'));
    }
    let big = vec![b' '; super::status::MAX_STATUS_BYTES + 1];
    assert!(parse(&big).unwrap_err().to_string().contains("at most"));
    // Wrong types: defaults and notes, no failure.
    let (st, notes) = parse(br#"{"peers": {"details": [{"status": 7, "iceCandidateType": "x"}]}, "wireguardPort": 70000, "management": []}"#).unwrap();
    assert_eq!(st.peers.len(), 1);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("peers.details[0].status: expected a string")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("wireguardPort: 70000")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("management: expected an object")),
        "{notes:?}"
    );
}

#[test]
fn deflated_zip_as_python_and_go_write_it() {
    // tests/fixtures/netbird/bundle-deflated.zip: the bundle folder zipped with method 8.
    let b = bundle::from_zip(fixture!("bundle-deflated.zip")).unwrap();
    assert_eq!(
        b.file("status.txt").unwrap(),
        &fixture!("bundle/status.txt")[..]
    );
    assert_eq!(
        b.file("client.log").unwrap(),
        &fixture!("bundle/client.log")[..]
    );
    assert!(b.listing.iter().any(|e| e.name == "README.txt" && !e.read));
    let (st, _) = parse(b.file("status.txt").unwrap()).unwrap();
    assert_eq!(st.peers.len(), 3);
}
