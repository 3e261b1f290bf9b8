//! What several commands read the same way: files (with a size cap), resolvers, CA roots,
//! proxies, environment variables.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Result;
use probes::control::http::ProxyUrl;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::exit::usage;

/// The largest file a command reads (profiles, endpoint lists, CA bundles, password and
/// secret files, firewall dumps): far above any real one, small enough to hold in memory.
pub(crate) const MAX_FILE: u64 = 16 << 20;

/// Read a whole file of at most `cap` bytes; `flag` names it in the one-line error.
pub(crate) fn read_file(flag: &str, path: &Path, cap: u64) -> Result<Vec<u8>> {
    let fail = |e: String| usage(format!("{flag} {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(fail("is a directory".into()));
    }
    let mut data = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut data)
        .map_err(|e| fail(e.to_string()))?;
    if data.len() as u64 > cap {
        let limit = if cap >= 1 << 20 {
            format!("{} MiB", cap >> 20)
        } else {
            format!("{} KiB", cap >> 10)
        };
        return Err(fail(format!("larger than {limit}")));
    }
    Ok(data)
}

/// [`read_file`] as UTF-8 text.
pub(crate) fn read_text(flag: &str, path: &Path, cap: u64) -> Result<String> {
    let data = read_file(flag, path, cap)?;
    String::from_utf8(data).map_err(|_| usage(format!("{flag} {}: not UTF-8 text", path.display())))
}

/// `ADDR` or `ADDR:PORT` of a resolver (port 53).
pub(crate) fn parse_dns_server(s: &str) -> Result<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        .ok_or_else(|| usage(format!("--dns-server: not ADDR[:PORT]: {s:?}")))
}

/// The resolvers: the flags', else the system's.
pub(crate) fn nameservers(flags: &[String]) -> Result<Vec<SocketAddr>> {
    if flags.is_empty() {
        return Ok(engine::control::system_nameservers());
    }
    flags.iter().map(|s| parse_dns_server(s)).collect()
}

/// An environment variable (or its lower-case spelling, as curl reads proxies), if set and
/// not blank.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| std::env::var(name.to_ascii_lowercase()).ok())
        .filter(|v| !v.trim().is_empty())
}

/// Root certificates from PEM files (`--ca`); a file without a certificate is an error.
pub(crate) fn load_roots(paths: &[std::path::PathBuf]) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for path in paths {
        let pem = read_file("--ca", path, MAX_FILE)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(usage(format!(
                "--ca {}: no CERTIFICATE in the file",
                path.display()
            )));
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// The HTTP proxy for TCP checks: `--proxy`, else `$HTTPS_PROXY` unless `--no-proxy`; and the
/// `$NO_PROXY` list that goes with it (an explicit `--proxy` is used for everything).
pub(crate) fn proxy(
    flag: Option<&str>,
    no_proxy: bool,
) -> Result<(Option<ProxyUrl>, Option<String>)> {
    let text = match (flag, no_proxy) {
        (Some(p), _) => Some(p.to_string()),
        (None, false) => env("HTTPS_PROXY"),
        (None, true) => None,
    };
    let proxy = text
        .map(|p| ProxyUrl::parse(&p).map_err(|e| usage(format!("proxy: {e}"))))
        .transpose()?;
    let exempt = if flag.is_some() || no_proxy {
        None
    } else {
        env("NO_PROXY")
    };
    Ok((proxy, exempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_capped_and_must_be_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let e = read_file("--x", &big, 1024).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        assert!(read_file("--x", &big, 4096).is_ok());
        let e = read_file("--x", dir.path(), 1024).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        #[cfg(unix)]
        {
            // An endless file stops at the cap instead of filling memory.
            let e = read_file("--ca", Path::new("/dev/zero"), 1024)
                .unwrap_err()
                .to_string();
            assert!(e.contains("larger than"), "{e}");
        }
    }

    #[test]
    fn an_empty_ca_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_roots(&[empty]).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn resolvers_take_an_optional_port() {
        assert_eq!(
            parse_dns_server("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_server("[2001:db8::53]:5353").unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        );
        assert!(parse_dns_server("dns.example").is_err());
    }
}
