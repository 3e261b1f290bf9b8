//! One request to the probe server: method, path, query and the headers it reads, checked
//! and typed. Only GET is served (RFC 9110 §9.3.1), without a body; every parameter and
//! header has a range, and a parameter or header read here that appears twice is refused
//! rather than resolved one way or the other.
//!
//! - `GET /` — an index; `GET /metrics` — the server's own counters; neither takes a query.
//! - `GET /probe?module=NAME&target=IP` — run the module's check. `module` is 1 to
//!   [`MAX_MODULE_LEN`] letters, digits, `-`, `_`, `.`; `target` is an IP literal (IPv6 with
//!   or without brackets; an IPv4-mapped IPv6 address is taken as the IPv4 address it maps).
//! - `X-Prometheus-Scrape-Timeout-Seconds`: a finite number of seconds in
//!   [`SCRAPE_TIMEOUT_MIN`]..=[`SCRAPE_TIMEOUT_MAX`].
//! - `Accept`: OpenMetrics when the client prefers `application/openmetrics-text` (RFC 9110
//!   §12.5.1 quality values), else the classic text format.

use std::net::IpAddr;
use std::time::Duration;

use super::auth::{Auth, AuthError};

/// Longest query string accepted, bytes.
pub const MAX_QUERY_LEN: usize = 1024;
/// Longest module name.
pub const MAX_MODULE_LEN: usize = 64;
/// Shortest scrape timeout accepted, seconds.
pub const SCRAPE_TIMEOUT_MIN: f64 = 0.1;
/// Longest scrape timeout accepted, seconds (an hour).
pub const SCRAPE_TIMEOUT_MAX: f64 = 3600.0;
/// The header in which Prometheus says how long it waits for a scrape.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";
/// How much earlier than the scrape timeout a check is stopped, so its partial result still
/// arrives (blackbox_exporter's default offset); at most half of the timeout.
pub const SCRAPE_OFFSET: Duration = Duration::from_millis(500);
/// Longest peer-supplied text quoted back in an error.
const SHOWN: usize = 64;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: what the server offers.
    Index,
    /// `/metrics`: the server's own counters.
    Metrics,
    /// `/probe`: one check.
    Probe(ProbeQuery),
}

/// The parameters of `/probe`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeQuery {
    /// `module=`: which profile (the server's default when absent).
    pub module: Option<String>,
    /// `target=`: the address every name of the profile is pointed at.
    pub target: Option<IpAddr>,
}

/// A request that passed every rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// What it asks for.
    pub endpoint: Endpoint,
    /// Whether the answer is written as OpenMetrics (else the classic text format).
    pub openmetrics: bool,
    /// Prometheus' scrape timeout, when it said.
    pub scrape_timeout: Option<Duration>,
}

/// Why a request is refused; each has its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not GET.
    #[error("only GET is served")]
    Method,
    /// Authorisation missing or wrong.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// No such path.
    #[error("not found: try /probe or /metrics")]
    NotFound,
    /// The query string is too long.
    #[error("query string of {len} bytes (at most {MAX_QUERY_LEN})")]
    QueryTooLong {
        /// Its length.
        len: usize,
    },
    /// A parameter this endpoint does not take.
    #[error("unknown parameter {name}")]
    UnknownParameter {
        /// The name, escaped and shortened.
        name: String,
    },
    /// A parameter given twice.
    #[error("parameter {name} given more than once")]
    RepeatedParameter {
        /// The name.
        name: &'static str,
    },
    /// `module=` is not a module name.
    #[error(
        "module {value} is not a module name (1 to {MAX_MODULE_LEN} letters, digits, '-', '_', '.')"
    )]
    BadModule {
        /// The value, escaped and shortened.
        value: String,
    },
    /// `target=` is not an IP literal.
    #[error("target {value} is not an IP address")]
    BadTarget {
        /// The value, escaped and shortened.
        value: String,
    },
    /// The scrape timeout header is not a number in range.
    #[error(
        "{SCRAPE_TIMEOUT_HEADER} {value}: expected seconds from {SCRAPE_TIMEOUT_MIN} to {SCRAPE_TIMEOUT_MAX}"
    )]
    ScrapeTimeout {
        /// The value, escaped and shortened.
        value: String,
    },
    /// A header read here given twice.
    #[error("header {name} given more than once")]
    RepeatedHeader {
        /// The header.
        name: &'static str,
    },
    /// A GET with a body.
    #[error("a GET request carries no body")]
    Body,
}

impl RequestError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Method => 405,
            RequestError::Unauthorized(_) => 401,
            RequestError::NotFound => 404,
            RequestError::QueryTooLong { .. } => 414,
            _ => 400,
        }
    }
}

/// `s` as it may be quoted back: escaped, at most [`SHOWN`] characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(SHOWN).flat_map(char::escape_debug).collect();
    if s.chars().count() > SHOWN {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// The value of the header `name` (lower case), refusing a second one.
fn one_header<'a>(
    headers: &[(&str, &'a [u8])],
    name: &'static str,
) -> Result<Option<&'a [u8]>, RequestError> {
    let mut found = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(RequestError::RepeatedHeader { name });
            }
            found = Some(*v);
        }
    }
    Ok(found)
}

impl Request {
    /// Check a request: `method`, `path`, the raw `query` (without `?`) and its `headers`
    /// (every value, duplicates included), against `auth`. The rules apply in order: the
    /// method, the body, the authorisation, the path, then the parameters and headers, so
    /// nothing about the server is told to a requester that is not authorised.
    pub fn parse(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &[u8])],
        auth: &Auth,
    ) -> Result<Request, RequestError> {
        if method != "GET" {
            return Err(RequestError::Method);
        }
        if one_header(headers, "transfer-encoding")?.is_some()
            || one_header(headers, "content-length")?.is_some_and(|v| v != b"0")
        {
            return Err(RequestError::Body);
        }
        auth.check(one_header(headers, "authorization")?)?;
        let query = query.unwrap_or("");
        if query.len() > MAX_QUERY_LEN {
            return Err(RequestError::QueryTooLong { len: query.len() });
        }
        let endpoint = match path {
            "/" => {
                no_parameters(query)?;
                Endpoint::Index
            }
            "/metrics" => {
                no_parameters(query)?;
                Endpoint::Metrics
            }
            "/probe" => Endpoint::Probe(ProbeQuery::parse(query)?),
            _ => return Err(RequestError::NotFound),
        };
        let scrape_timeout = one_header(headers, SCRAPE_TIMEOUT_HEADER)?
            .map(scrape_timeout)
            .transpose()?;
        // Several Accept headers are one list (RFC 9110 §5.3).
        let accept: Vec<&[u8]> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("accept"))
            .map(|(_, v)| *v)
            .collect();
        Ok(Request {
            endpoint,
            openmetrics: wants_openmetrics(&accept),
            scrape_timeout,
        })
    }
}

fn no_parameters(query: &str) -> Result<(), RequestError> {
    match form_urlencoded::parse(query.as_bytes()).next() {
        Some((name, _)) => Err(RequestError::UnknownParameter { name: shown(&name) }),
        None => Ok(()),
    }
}

impl ProbeQuery {
    /// Parse the query of `/probe` (`application/x-www-form-urlencoded`).
    pub fn parse(query: &str) -> Result<ProbeQuery, RequestError> {
        let mut q = ProbeQuery::default();
        let mut seen_target = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "module" => {
                    if q.module.is_some() {
                        return Err(RequestError::RepeatedParameter { name: "module" });
                    }
                    q.module = Some(module_name(&value)?);
                }
                "target" => {
                    if seen_target {
                        return Err(RequestError::RepeatedParameter { name: "target" });
                    }
                    seen_target = true;
                    q.target = Some(target(&value)?);
                }
                other => {
                    return Err(RequestError::UnknownParameter { name: shown(other) });
                }
            }
        }
        Ok(q)
    }
}

/// Whether `name` is a module name (the same rule as the operator's `--module NAME=FILE`).
pub fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODULE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn module_name(v: &str) -> Result<String, RequestError> {
    if valid_module_name(v) {
        Ok(v.to_string())
    } else {
        Err(RequestError::BadModule { value: shown(v) })
    }
}

/// An IP literal, IPv6 with or without brackets, IPv4-mapped IPv6 taken as IPv4.
fn target(v: &str) -> Result<IpAddr, RequestError> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| RequestError::BadTarget { value: shown(v) })
}

/// `X-Prometheus-Scrape-Timeout-Seconds`: a finite number of seconds in range.
pub fn scrape_timeout(value: &[u8]) -> Result<Duration, RequestError> {
    let bad = || RequestError::ScrapeTimeout {
        value: shown(&String::from_utf8_lossy(value)),
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    // Digits, one point and an exponent only: "inf", "NaN" and hex never reach the range.
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return Err(bad());
    }
    let secs: f64 = text.parse().map_err(|_| bad())?;
    if !secs.is_finite() || !(SCRAPE_TIMEOUT_MIN..=SCRAPE_TIMEOUT_MAX).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long a check may run when Prometheus waits `timeout`: the timeout less
/// [`SCRAPE_OFFSET`], or half of it when it is shorter than twice the offset.
pub fn probe_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub(SCRAPE_OFFSET.min(timeout / 2))
}

/// Whether an `Accept` list prefers OpenMetrics text to the classic text format: an
/// `application/openmetrics-text` range with a quality above zero and no lower than the best
/// `text/plain` one (RFC 9110 §12.5.1). Wildcards choose the classic format.
pub fn wants_openmetrics(accept: &[&[u8]]) -> bool {
    let mut om: Option<f32> = None;
    let mut text: f32 = 0.0;
    for value in accept {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q: f32 = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => om = Some(om.map_or(q, |o: f32| o.max(q))),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
    }
    om.is_some_and(|q| q > 0.0 && q >= text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const PROMETHEUS_ACCEPT: &[u8] = b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    fn get(
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Result<Request, RequestError> {
        Request::parse("GET", path, query, headers, &Auth::none())
    }

    #[test]
    fn probe_queries_parse() {
        let r = get("/probe", Some("module=lab&target=%5B%3A%3A1%5D"), &[]).unwrap();
        assert_eq!(
            r.endpoint,
            Endpoint::Probe(ProbeQuery {
                module: Some("lab".into()),
                target: Some("::1".parse().unwrap()),
            })
        );
        assert!(!r.openmetrics);
        assert_eq!(r.scrape_timeout, None);
        let r = get("/probe", None, &[]).unwrap();
        assert_eq!(r.endpoint, Endpoint::Probe(ProbeQuery::default()));
    }

    #[test]
    fn mapped_ipv6_targets_are_ipv4() {
        let q = ProbeQuery::parse("target=::ffff:127.0.0.1").unwrap();
        assert_eq!(q.target, Some("127.0.0.1".parse().unwrap()));
        let q = ProbeQuery::parse("target=[::ffff:7f00:1]").unwrap();
        assert_eq!(q.target, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn repeated_unknown_and_bad_parameters_are_refused() {
        for (q, want) in [
            (
                "module=a&module=a",
                RequestError::RepeatedParameter { name: "module" },
            ),
            (
                "target=127.0.0.1&target=127.0.0.2",
                RequestError::RepeatedParameter { name: "target" },
            ),
            (
                "debug=true",
                RequestError::UnknownParameter {
                    name: "\"debug\"".into(),
                },
            ),
            (
                "module=",
                RequestError::BadModule {
                    value: "\"\"".into(),
                },
            ),
            (
                "module=a%2Fb",
                RequestError::BadModule {
                    value: "\"a/b\"".into(),
                },
            ),
            (
                "target=",
                RequestError::BadTarget {
                    value: "\"\"".into(),
                },
            ),
            (
                "target=example.net",
                RequestError::BadTarget {
                    value: "\"example.net\"".into(),
                },
            ),
            (
                "target=127.0.0.1:80",
                RequestError::BadTarget {
                    value: "\"127.0.0.1:80\"".into(),
                },
            ),
        ] {
            let e = ProbeQuery::parse(q).unwrap_err();
            assert_eq!(e, want, "{q}");
            assert_eq!(e.status(), 400);
        }
        let long = "m".repeat(MAX_MODULE_LEN + 1);
        assert!(ProbeQuery::parse(&format!("module={long}")).is_err());
        assert!(ProbeQuery::parse(&format!("module={}", &long[1..])).is_ok());
    }

    #[test]
    fn quoted_values_are_escaped_and_capped() {
        let e = ProbeQuery::parse(&format!("target=%1B%5B2J{}", "x".repeat(200))).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains('\u{1b}'), "{msg}");
        assert!(msg.contains("\\u{1b}"), "{msg}");
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn paths_methods_bodies_and_queries() {
        assert_eq!(
            get("/metrics", None, &[]).unwrap().endpoint,
            Endpoint::Metrics
        );
        assert_eq!(get("/", None, &[]).unwrap().endpoint, Endpoint::Index);
        assert_eq!(get("/metrics", Some("x=1"), &[]).unwrap_err().status(), 400);
        assert_eq!(get("/nope", None, &[]).unwrap_err().status(), 404);
        let e = Request::parse("POST", "/probe", None, &[], &Auth::none()).unwrap_err();
        assert_eq!(e.status(), 405);
        assert_eq!(
            get("/probe", None, &[("content-length", b"5")]).unwrap_err(),
            RequestError::Body
        );
        assert!(get("/probe", None, &[("Content-Length", b"0")]).is_ok());
        assert_eq!(
            get("/probe", None, &[("transfer-encoding", b"chunked")]).unwrap_err(),
            RequestError::Body
        );
        let q = "a".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(get("/probe", Some(&q), &[]).unwrap_err().status(), 414);
    }

    #[test]
    fn scrape_timeouts_have_a_range() {
        assert_eq!(scrape_timeout(b"10").unwrap(), Duration::from_secs(10));
        assert_eq!(
            scrape_timeout(b" 0.5 ").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(scrape_timeout(b"3600").unwrap(), Duration::from_secs(3600));
        for bad in [
            &b"1e20"[..],
            b"3600.5",
            b"0.05",
            b"0",
            b"-1",
            b"inf",
            b"+Inf",
            b"NaN",
            b"",
            b"0x10",
            b"1e400",
            b"\xff",
            b"1,5",
        ] {
            let e = scrape_timeout(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
        let r = get("/probe", None, &[(SCRAPE_TIMEOUT_HEADER, b"1e20")]);
        assert!(
            matches!(r, Err(RequestError::ScrapeTimeout { .. })),
            "{r:?}"
        );
        let r = get(
            "/probe",
            None,
            &[
                ("X-Prometheus-Scrape-Timeout-Seconds", b"5"),
                (SCRAPE_TIMEOUT_HEADER, b"5"),
            ],
        );
        assert_eq!(
            r.unwrap_err(),
            RequestError::RepeatedHeader {
                name: SCRAPE_TIMEOUT_HEADER
            }
        );
        let r = get(
            "/probe",
            None,
            &[("X-Prometheus-Scrape-Timeout-Seconds", b"5")],
        )
        .unwrap();
        assert_eq!(r.scrape_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn budgets_leave_room_for_the_answer() {
        assert_eq!(
            probe_budget(Duration::from_secs(10)),
            Duration::from_millis(9500)
        );
        assert_eq!(
            probe_budget(Duration::from_millis(600)),
            Duration::from_millis(300)
        );
        assert_eq!(
            probe_budget(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_request_is_answered_with_a_status(
            path in "/[a-z]{0,8}",
            query in proptest::option::of(".{0,64}"),
            timeout in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
            accept in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let headers = [(SCRAPE_TIMEOUT_HEADER, &timeout[..]), ("accept", &accept[..])];
            match Request::parse("GET", &path, query.as_deref(), &headers, &Auth::none()) {
                Ok(r) => {
                    if let Some(t) = r.scrape_timeout {
                        proptest::prop_assert!(t >= Duration::from_millis(100));
                        proptest::prop_assert!(t <= Duration::from_secs(3600));
                    }
                }
                Err(e) => proptest::prop_assert!(matches!(e.status(), 400 | 404 | 414)),
            }
        }
    }

    #[test]
    fn openmetrics_when_preferred() {
        assert!(wants_openmetrics(&[PROMETHEUS_ACCEPT]));
        assert!(wants_openmetrics(&[b"application/openmetrics-text"]));
        assert!(!wants_openmetrics(&[b"*/*"]));
        assert!(!wants_openmetrics(&[]));
        assert!(!wants_openmetrics(&[
            b"text/plain, application/openmetrics-text;q=0.5"
        ]));
        assert!(!wants_openmetrics(&[b"application/openmetrics-text;q=0"]));
        assert!(!wants_openmetrics(&[b"application/openmetrics-text;q=2"]));
        let r = get("/metrics", None, &[("Accept", PROMETHEUS_ACCEPT)]).unwrap();
        assert!(r.openmetrics);
    }
}
