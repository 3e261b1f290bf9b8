//! The probe server's request handling (`stunmap serve --metrics`): arbitrary bytes parsed as
//! an HTTP/1.1 request head by `httparse` (the parser inside hyper), then the same rules the
//! server applies — method, body, authorisation, path, query, the scrape-timeout and Accept
//! headers — and, for a `/probe` with a target, the allow-list and the TURN credential rule.
//! The raw bytes also go straight to the scrape-timeout, query and CIDR parsers.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use probes::probe_server::allow::{Local, parse_cidr};
use probes::probe_server::request::{
    SCRAPE_TIMEOUT_MAX, SCRAPE_TIMEOUT_MIN, probe_budget, scrape_timeout,
};
use probes::probe_server::{
    AllowList, Auth, CredentialUse, Decision, DenyReason, Endpoint, ProbeQuery, Request,
    RequestError,
};

fn check_request(method: &str, target: &str, headers: &[(&str, &[u8])]) {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let open = Auth::none();
    let closed = match Auth::none()
        .with_bearer("fuzz-token")
        .and_then(|a| a.with_basic("prom:pw"))
    {
        Ok(a) => a,
        Err(_) => return,
    };
    let has_auth = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    for auth in [&open, &closed] {
        match Request::parse(method, path, query, headers, auth) {
            Ok(r) => {
                assert_eq!(method, "GET");
                if auth.required() {
                    assert!(has_auth, "authorised without an Authorization header");
                }
                if let Some(t) = r.scrape_timeout {
                    let s = t.as_secs_f64();
                    assert!((SCRAPE_TIMEOUT_MIN..=SCRAPE_TIMEOUT_MAX + 1e-9).contains(&s));
                    assert!(probe_budget(t) <= t && probe_budget(t) >= t / 2);
                }
                if let Endpoint::Probe(q) = r.endpoint {
                    check_probe(&q);
                }
            }
            Err(e) => {
                assert!(matches!(e.status(), 400 | 401 | 404 | 405 | 414), "{e:?}");
                if !auth.required() {
                    assert!(!matches!(e, RequestError::Unauthorized(_)));
                }
                let _ = e.to_string();
            }
        }
    }
}

fn check_probe(q: &ProbeQuery) {
    if let Some(m) = &q.module {
        assert!(!m.is_empty() && m.len() <= 64);
    }
    let Some(t) = q.target else { return };
    // Targets are canonical: an IPv4-mapped IPv6 address is decided as IPv4.
    if let IpAddr::V6(v6) = t {
        assert!(v6.to_ipv4_mapped().is_none(), "{t} not canonical");
    }
    let local = Local {
        addresses: vec![t],
        broadcasts: Vec::new(),
    };
    let default = AllowList::default();
    // The host's own address is never a target by default; loopback never is either.
    assert!(matches!(default.decide(t, &local), Decision::Denied(_)));
    if t.is_loopback() {
        assert_eq!(
            default.decide(t, &Local::default()),
            Decision::Denied(DenyReason::Loopback)
        );
    }
    let _ = CredentialUse::decide(true, Some(t), &[t], false);
    assert_eq!(
        CredentialUse::decide(true, Some(t), &[], false),
        CredentialUse::Withheld
    );
}

fuzz_target!(|data: &[u8]| {
    // Straight to the header and query parsers.
    if let Ok(d) = scrape_timeout(data) {
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_secs(3600));
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(q) = ProbeQuery::parse(&text) {
        check_probe(&q);
    }
    // A CIDR list (one a line) decides arbitrary addresses without panicking.
    let nets: Vec<_> = text.lines().filter_map(|l| parse_cidr(l).ok()).collect();
    if !nets.is_empty() {
        let (allow, deny) = nets.split_at(nets.len() / 2);
        let table = AllowList::new(allow.to_vec(), deny.to_vec());
        for n in &nets {
            let _ = table.decide(n.addr(), &Local::default());
            let _ = table.decide(n.broadcast(), &Local::default());
        }
    }

    // The whole request head.
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(data).is_err() {
        return;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return;
    };
    let fields: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    check_request(method, target, &fields);
});
