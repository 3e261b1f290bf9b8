//! NetBird status import on arbitrary bytes (`stunmap check --netbird-status FILE`, the
//! `status.txt` of a debug bundle): JSON or detail text, then everything built from it — the
//! profile, the per-peer reasons under several measurements, the URI comparison, the JSON
//! form — and the client-log and routes readers on the same text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use probes::nat::NatType;
use probes::netbird::compare::{MeasuredState, MeasuredUri, compare};
use probes::netbird::peers::{Measured, explain};
use probes::netbird::{log, routes, status};
use probes::profile::Profile;

static SEED: OnceLock<Option<Profile>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(seed) = SEED.get_or_init(|| probes::profile::netbird_cloud().ok()) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let hist = log::read(&text);
    let rs = routes::parse(&text);
    if let Ok((st, _notes)) = status::parse(data) {
        assert!(st.peers.len() <= status::MAX_PEERS);
        assert!(st.relays.len() <= status::MAX_URIS);
        if let Ok(p) = status::to_profile(&st, seed) {
            assert!(p.profile.validate().is_ok());
        }
        for m in [
            Measured::default(),
            Measured {
                stun_udp: Some(false),
                ..Measured::default()
            },
            Measured {
                nat: Some(NatType::SYMMETRIC),
                stun_udp: Some(true),
                ..Measured::default()
            },
            Measured {
                nat: Some(NatType::UdpBlocked),
                relay_ok: Some(true),
                ..Measured::default()
            },
        ] {
            let f = explain(&st, &m, Some(&hist));
            assert!(f.len() <= st.peers.len());
        }
        let rows = compare(
            &st,
            &[MeasuredUri {
                uri: "stun:stun.netbird.io:443".into(),
                state: MeasuredState::Ok,
                detail: None,
            }],
        );
        assert!(rows.len() <= st.relays.len() + 2);
        let _ = serde_json::to_string(&st);
        let _ = routes::findings(Some(&rs), Some(&st), "wt0");
    }
});
