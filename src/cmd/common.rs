//! What several commands read the same way: files (with a size cap), secrets from their files,
//! resolvers, CA roots, proxies, environment variables, the address-family flags.

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

/// The largest password or secret file read (TURN passwords and REST secrets, the pair room
/// secret).
pub(crate) const MAX_SECRET_FILE: u64 = 64 << 10;

/// The first line of the text file `path` ([`read_text`]): how a secret is read from its
/// file flag, so it shows in no process list.
pub(crate) fn read_first_line(flag: &str, path: &Path, cap: u64) -> Result<String> {
    let text = read_text(flag, path, cap)?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// `-4` / `-6`: the address families a command probes.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub(crate) struct FamilyArgs {
    /// Only IPv4 addresses.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Only IPv6 addresses.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
}

impl FamilyArgs {
    /// The families chosen (both when neither flag is given).
    pub(crate) fn choice(self) -> crate::target::FamilyChoice {
        crate::target::FamilyChoice::from_flags(self.ipv4, self.ipv6)
    }
}

/// `--subnet`: the WireGuard network as an address prefix (`100.64.0.0/10`).
pub(crate) fn parse_subnet(s: &str) -> Result<probes::hostfw::Cidr> {
    probes::hostfw::Cidr::parse(s).ok_or_else(|| {
        usage(format!(
            "--subnet: not an address prefix: {}",
            crate::report::doc::quoted(s)
        ))
    })
}

/// `ADDR` or `ADDR:PORT` of a resolver (port 53).
pub(crate) fn parse_dns_server(s: &str) -> Result<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        .ok_or_else(|| {
            usage(format!(
                "--dns-server: not ADDR[:PORT]: {}",
                crate::report::doc::quoted(s)
            ))
        })
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

/// Where the probes leave from: `--bind`, `--interface`, `--source-port` (netcheck's
/// `--bind-address`/`--bind-port`, stuntman's `--localaddr`/`--localport`, coturn's `-L`/`-l`).
/// Flattened into every probing command; [`BindArgs::install`] is the one-line hook.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct BindArgs {
    /// Send the probes from this local address (one per address family; repeat for both). An
    /// address the host does not have is refused before anything is sent.
    #[arg(long = "bind", value_name = "ADDR")]
    pub(crate) bind: Vec<IpAddr>,
    /// Send the probes out of this interface (SO_BINDTODEVICE: Linux, needs root or
    /// CAP_NET_RAW), whatever the routing table says.
    #[arg(long, value_name = "NAME", value_parser = interface_name)]
    pub(crate) interface: Option<String>,
    /// The UDP source port of the first probe socket of each address family (51820: how the
    /// NAT treats WireGuard's own port), 1 to 65535; a port in use is refused.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) source_port: Option<u16>,
}

/// `--interface`: a name the kernel would accept (1 to 15 bytes, no `/` or spaces).
fn interface_name(s: &str) -> std::result::Result<String, String> {
    engine::source::IfName::new(s)
        .map(|_| s.to_string())
        .ok_or_else(|| {
            format!(
                "{} is not an interface name (1 to 15 bytes, no '/' or spaces)",
                crate::report::doc::quoted(s)
            )
        })
}

impl BindArgs {
    /// The binding the flags ask for (pure: no I/O). Two `--bind` addresses of one family are
    /// a usage error.
    pub(crate) fn source(&self) -> Result<engine::source::SourceBind> {
        let mut b = engine::source::SourceBind::default();
        for ip in &self.bind {
            let fam = b.family_mut(ip.is_ipv4());
            if let Some(prev) = fam.ip {
                return Err(usage(format!(
                    "--bind {prev} and --bind {ip}: one address per family"
                )));
            }
            fam.ip = Some(*ip);
        }
        let device = self
            .interface
            .as_deref()
            .and_then(engine::source::IfName::new);
        for v4 in [true, false] {
            let fam = b.family_mut(v4);
            fam.device = device;
            fam.port = self.source_port;
        }
        Ok(b)
    }

    /// Whether any flag was given.
    pub(crate) fn is_set(&self) -> bool {
        !self.bind.is_empty() || self.interface.is_some() || self.source_port.is_some()
    }

    /// The binding, checked against the host (the interface exists, the address is the
    /// host's, the port is free; a one-line usage error otherwise).
    pub(crate) fn checked(&self) -> Result<engine::source::SourceBind> {
        let b = self.source()?;
        b.check().map_err(|e| usage(e.to_string()))?;
        Ok(b)
    }

    /// The hook of the one-shot commands: check the binding and make it the process default,
    /// so every socket the command opens uses it.
    pub(crate) fn install(&self) -> Result<()> {
        if self.is_set() {
            engine::source::install(self.checked()?);
        }
        Ok(())
    }
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
    fn bind_flags_make_one_binding_per_family() {
        let a = BindArgs {
            bind: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            interface: Some("eth0".into()),
            source_port: Some(51820),
        };
        let b = a.source().unwrap();
        assert_eq!(b.v4.ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(b.v6.ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(b.v4.device.unwrap().as_str(), "eth0");
        assert_eq!((b.v4.port, b.v6.port), (Some(51820), Some(51820)));
        let twice = BindArgs {
            bind: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
            ..BindArgs::default()
        };
        let e = twice.source().unwrap_err().to_string();
        assert!(e.contains("one address per family"), "{e}");
        assert!(interface_name("a/b").is_err());
        assert!(interface_name("sixteen-bytes-xx").is_err());
        assert!(!BindArgs::default().is_set());
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
