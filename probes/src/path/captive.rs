//! Captive portals: a plain HTTP request on port 80 to a host that answers such requests with
//! a redirect to its own HTTPS site (the management host, or a URL given for it). A network
//! that holds its users behind a login page answers instead — a redirect to another domain, a
//! page of HTML, or 511 Network Authentication Required (RFC 6585 §6) — and then nothing else
//! works until someone logs in, so a portal is the first thing a report says.

use std::fmt;

use serde::Serialize;

use crate::finding::Fix;

/// The longest body prefix kept (a portal's title is near the top).
pub const MAX_BODY: usize = 4096;

/// What the HTTP request got back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// `Location`.
    pub location: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The page's `<title>`, when the body is HTML.
    pub title: Option<String>,
    /// Whether the body looks like HTML.
    pub html: bool,
}

impl HttpAnswer {
    /// An answer from its head and the first bytes of its body.
    pub fn new(
        status: u16,
        location: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> HttpAnswer {
        let body = body.get(..body.len().min(MAX_BODY)).unwrap_or(body);
        let text = String::from_utf8_lossy(body);
        let lower = text.to_ascii_lowercase();
        let html = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html"))
            || lower.trim_start().starts_with("<!doctype html")
            || lower.contains("<html");
        let title = lower.find("<title>").and_then(|start| {
            let from = start + "<title>".len();
            let end = lower.get(from..)?.find("</title>")? + from;
            let t = text.get(from..end)?.trim();
            (!t.is_empty()).then(|| t.chars().take(120).collect())
        });
        HttpAnswer {
            status,
            location: location.map(|l| l.chars().take(512).collect()),
            content_type: content_type.map(str::to_string),
            title,
            html,
        }
    }
}

/// How the request went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum HttpOutcome {
    /// An HTTP answer.
    Answered(HttpAnswer),
    /// The TCP connection failed.
    ConnectFailed {
        /// How.
        error: String,
    },
    /// No answer in time.
    Timeout,
    /// Bytes that are not an HTTP response.
    NotHttp {
        /// What was wrong.
        error: String,
    },
}

/// Why a portal is believed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "sign")]
pub enum PortalSign {
    /// 511 Network Authentication Required (RFC 6585 §6).
    NetworkAuthenticationRequired,
    /// A redirect to another domain.
    RedirectElsewhere {
        /// Where to.
        location: String,
        /// Its host.
        host: String,
    },
    /// An HTML page where a redirect to HTTPS was expected.
    PageInsteadOfRedirect {
        /// Its status.
        status: u16,
        /// Its title.
        title: Option<String>,
    },
}

impl fmt::Display for PortalSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortalSign::NetworkAuthenticationRequired => {
                f.write_str("the network answered 511 Network Authentication Required")
            }
            PortalSign::RedirectElsewhere { host, .. } => {
                write!(f, "plain HTTP is redirected to another domain ({host})")
            }
            PortalSign::PageInsteadOfRedirect { status, title } => {
                write!(f, "plain HTTP gets an HTML page (status {status}")?;
                if let Some(t) = title {
                    write!(f, ", \"{t}\"")?;
                }
                f.write_str(") instead of the redirect to HTTPS")
            }
        }
    }
}

/// The judgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Portal {
    /// A captive portal holds this network.
    Detected {
        /// Why.
        #[serde(flatten)]
        sign: PortalSign,
    },
    /// The host answered as it should (a redirect to its own HTTPS site, or its own error).
    NotSeen {
        /// What it answered.
        why: String,
    },
    /// No answer that could tell (port 80 closed or filtered, no HTTP).
    Unknown {
        /// Why.
        why: String,
    },
}

impl Portal {
    /// Whether a portal was detected.
    pub fn detected(&self) -> bool {
        matches!(self, Portal::Detected { .. })
    }

    /// The fix for a detected portal.
    pub fn fix(&self) -> Option<Fix> {
        let Portal::Detected { sign } = self else {
            return None;
        };
        let mut fix = Fix::new(
            "Log in to the network's captive portal (open any http:// page in a browser on this machine), then run the check again: until then every connection is held by the portal",
        );
        if let PortalSign::RedirectElsewhere { location, .. } = sign {
            fix = fix.command(format!("xdg-open '{location}'"));
        }
        Some(fix.caveat(
            "An unattended host (a server, a router-side peer) cannot log in: put it on a network without a portal or ask the network's operator to exempt it",
        ))
    }
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Portal::Detected { sign } => write!(f, "captive portal: {sign}"),
            Portal::NotSeen { why } => write!(f, "no captive portal: {why}"),
            Portal::Unknown { why } => write!(f, "captive portal unknown: {why}"),
        }
    }
}

/// The host of an absolute `http://` or `https://` URL, lowercased, without the port; `None`
/// for a relative one.
fn url_host(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .or_else(|| lower.strip_prefix("//"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    Some(host.trim_end_matches('.').to_string())
}

/// The last two labels of a name (its domain, roughly), or the name itself (an IP).
fn domain_of(host: &str) -> &str {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    let mut dots = host.rmatch_indices('.');
    let _ = dots.next();
    match dots.next() {
        Some((i, _)) => host.get(i + 1..).unwrap_or(host),
        None => host,
    }
}

/// Judge what `http://{host}/` answered.
pub fn judge(host: &str, outcome: &HttpOutcome) -> Portal {
    let expected = host.trim_end_matches('.').to_ascii_lowercase();
    let a = match outcome {
        HttpOutcome::Answered(a) => a,
        HttpOutcome::ConnectFailed { error } => {
            return Portal::Unknown {
                why: format!("port 80 of {host} did not accept a connection ({error})"),
            };
        }
        HttpOutcome::Timeout => {
            return Portal::Unknown {
                why: format!("no HTTP answer from {host} on port 80 in time"),
            };
        }
        HttpOutcome::NotHttp { error } => {
            return Portal::Unknown {
                why: format!("{host}:80 did not answer HTTP ({error})"),
            };
        }
    };
    if a.status == 511 {
        return Portal::Detected {
            sign: PortalSign::NetworkAuthenticationRequired,
        };
    }
    if (300..400).contains(&a.status) {
        let Some(location) = &a.location else {
            return Portal::NotSeen {
                why: format!("a redirect ({}) without a Location", a.status),
            };
        };
        return match url_host(location) {
            // A relative redirect stays on the host.
            None => Portal::NotSeen {
                why: format!("a redirect on {host} itself ({})", a.status),
            },
            Some(h) if h == expected || domain_of(&h) == domain_of(&expected) => Portal::NotSeen {
                why: if location.trim().to_ascii_lowercase().starts_with("https://") {
                    format!("the expected redirect to HTTPS ({})", a.status)
                } else {
                    format!("a redirect within {} ({})", domain_of(&expected), a.status)
                },
            },
            Some(h) => Portal::Detected {
                sign: PortalSign::RedirectElsewhere {
                    location: location.clone(),
                    host: h,
                },
            },
        };
    }
    if a.html && (200..300).contains(&a.status) {
        return Portal::Detected {
            sign: PortalSign::PageInsteadOfRedirect {
                status: a.status,
                title: a.title.clone(),
            },
        };
    }
    Portal::NotSeen {
        why: format!("{host} answered HTTP {} itself", a.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>, ct: Option<&str>, body: &str) -> HttpOutcome {
        HttpOutcome::Answered(HttpAnswer::new(status, location, ct, body.as_bytes()))
    }

    #[test]
    fn the_expected_https_redirect_is_no_portal() {
        let host = "api.netbird.io";
        let p = judge(
            host,
            &answer(301, Some("https://api.netbird.io/"), None, ""),
        );
        assert!(
            matches!(&p, Portal::NotSeen { why } if why.contains("redirect to HTTPS")),
            "{p}"
        );
        // Within the same domain, relative, or the server's own 404: no portal either.
        assert!(
            !judge(
                host,
                &answer(302, Some("https://app.netbird.io/x"), None, "")
            )
            .detected()
        );
        assert!(!judge(host, &answer(308, Some("/login"), None, "")).detected());
        assert!(!judge(host, &answer(404, None, Some("text/plain"), "nope")).detected());
        assert!(
            !judge(
                "198.18.0.10",
                &answer(301, Some("https://198.18.0.10/"), None, "")
            )
            .detected()
        );
    }

    #[test]
    fn portals_are_detected_three_ways() {
        let host = "api.netbird.io";
        let p = judge(
            host,
            &answer(
                302,
                Some("http://portal.hotel-wifi.example:8080/login?x=1"),
                None,
                "",
            ),
        );
        assert_eq!(
            p,
            Portal::Detected {
                sign: PortalSign::RedirectElsewhere {
                    location: "http://portal.hotel-wifi.example:8080/login?x=1".into(),
                    host: "portal.hotel-wifi.example".into()
                }
            }
        );
        assert!(p.fix().unwrap().commands[0].contains("portal.hotel-wifi.example"));
        let page = judge(
            host,
            &answer(
                200,
                None,
                Some("text/html; charset=utf-8"),
                "<html><head><TITLE> Welcome to Guest WiFi </TITLE></head></html>",
            ),
        );
        assert_eq!(
            page,
            Portal::Detected {
                sign: PortalSign::PageInsteadOfRedirect {
                    status: 200,
                    title: Some("Welcome to Guest WiFi".into())
                }
            }
        );
        assert!(
            page.to_string().contains("\"Welcome to Guest WiFi\""),
            "{page}"
        );
        assert!(judge(host, &answer(511, None, None, "")).detected());
        // A redirect to an IP literal is another host.
        assert!(judge(host, &answer(302, Some("http://10.0.0.1/"), None, "")).detected());
    }

    #[test]
    fn no_answer_is_unknown() {
        for o in [
            HttpOutcome::Timeout,
            HttpOutcome::ConnectFailed {
                error: "connection refused".into(),
            },
            HttpOutcome::NotHttp {
                error: "not an HTTP response".into(),
            },
        ] {
            assert!(matches!(judge("m.example", &o), Portal::Unknown { .. }));
        }
    }

    #[test]
    fn urls_and_domains() {
        assert_eq!(
            url_host("HTTPS://A.Example:8443/x").as_deref(),
            Some("a.example")
        );
        assert_eq!(
            url_host("http://user@[2001:db8::1]:80/").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(url_host("/relative"), None);
        assert_eq!(domain_of("a.b.example.com"), "example.com");
        assert_eq!(domain_of("localhost"), "localhost");
        // Hostile bytes: long, binary.
        let long = "x".repeat(10_000);
        let a = HttpAnswer::new(200, Some(&long), None, &[0xff; 9000]);
        assert_eq!(a.location.unwrap().len(), 512);
        assert!(!a.html);
    }
}
