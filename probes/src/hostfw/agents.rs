//! Endpoint security agents on Linux: products whose own network filtering (a firewall
//! module, network containment, web protection) can drop traffic the OS firewall tools do not
//! explain, and which NetBird's firewall page names as a cause ("Third-party security
//! software"). An agent is recognised by its running processes; the netfilter tables and
//! chains whose names carry the product's name are listed with it.
//!
//! The process and install names come from the vendors' Linux installation guides, as
//! collected by the community list of Linux EDR "indicators of presence" (Linux-EDR-IOP).
//! No vendor documents the names of the netfilter objects its agent creates, so a table or
//! chain is tied to a product only when a word of its name is the product's (`KESL_INPUT`
//! for Kaspersky Endpoint Security for Linux, `table inet crowdstrike`); that is a hint, and
//! the report says so.

use serde::Serialize;

use super::model::Ruleset;

/// A product stunmap recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Product name.
    pub product: &'static str,
    /// Process names (the kernel's `comm`, or the file name of `argv[0]`); an entry ending in
    /// `*` is a prefix.
    pub processes: &'static [&'static str],
    /// Install folders: a process whose executable or `argv[0]` lies below one is the agent's.
    pub paths: &'static [&'static str],
    /// Words (letters and digits only) that tie a netfilter table or chain to the product.
    pub words: &'static [&'static str],
    /// What the vendor documents about the product and the host firewall, if anything.
    pub note: Option<&'static str>,
}

/// The products recognised: the five NetBird's page names, then other common agents with
/// network filtering.
pub const AGENTS: &[Agent] = &[
    Agent {
        product: "Symantec Endpoint Protection (Broadcom)",
        processes: &[
            "sisamdagent",
            "sisidsagent",
            "sisipsagent",
            "rtvscand",
            "symcfgd",
        ],
        paths: &["/opt/Symantec/"],
        words: &["symantec", "sisips"],
        note: None,
    },
    Agent {
        product: "McAfee / Trellix Endpoint Security",
        processes: &[
            "mfetpd", "mfeespd", "isectpd", "isecespd", "masvc", "macmnsvc",
        ],
        paths: &["/opt/McAfee/", "/opt/isec/", "/opt/Trellix/"],
        words: &["mcafee", "trellix", "mfe", "ensl"],
        note: None,
    },
    Agent {
        product: "Kaspersky Endpoint Security for Linux",
        processes: &["kesl", "kesl-supervisor", "klnagent"],
        paths: &["/opt/kaspersky/"],
        words: &["kaspersky", "kesl"],
        note: Some(
            "Kaspersky documents that its Firewall Management task deletes firewall rules made with the system's \
             tools and restores its own every 60 seconds: NetBird's rules can vanish while it runs \
             (`kesl-control -F --query` lists its rules)",
        ),
    },
    Agent {
        product: "ESET Endpoint Security for Linux",
        processes: &["esets_daemon", "eraagent"],
        paths: &["/opt/eset/"],
        words: &["eset"],
        note: None,
    },
    Agent {
        product: "CrowdStrike Falcon",
        processes: &["falcon-sensor", "falcond"],
        paths: &["/opt/CrowdStrike/"],
        words: &["crowdstrike", "falcon"],
        note: None,
    },
    Agent {
        product: "Microsoft Defender for Endpoint",
        processes: &["wdavdaemon*"],
        paths: &["/opt/microsoft/mdatp/"],
        words: &["mdatp", "wdav"],
        note: None,
    },
    Agent {
        product: "SentinelOne",
        processes: &["s1-agent", "s1-orchestrator", "s1-network", "s1-scanner"],
        paths: &["/opt/sentinelone/", "/opt/SentinelOne/"],
        words: &["sentinelone"],
        note: None,
    },
    Agent {
        product: "Sophos Protection for Linux",
        processes: &["sophos*", "savd"],
        paths: &["/opt/sophos-spl/", "/opt/sophos-av/"],
        words: &["sophos"],
        note: None,
    },
    Agent {
        product: "Trend Micro Deep Security / Vision One agent",
        processes: &["ds_agent"],
        paths: &["/opt/ds_agent/"],
        words: &["trendmicro", "deepsecurity"],
        note: Some(
            "Trend Micro documents that the agent adds iptables rules of its own when it starts; its Firewall \
             module filters traffic on its own",
        ),
    },
    Agent {
        product: "Palo Alto Networks Cortex XDR",
        processes: &["traps_pmd"],
        paths: &["/opt/traps/"],
        words: &["cortex", "traps"],
        note: None,
    },
];

/// One process of this host, as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm`: the kernel's name (at most 15 bytes).
    pub comm: String,
    /// The first word of `/proc/PID/cmdline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv0: Option<String>,
    /// The target of `/proc/PID/exe`, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// An agent found running, or whose name is on netfilter objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FoundAgent {
    /// Product name.
    pub product: &'static str,
    /// Its processes: `name (pid N)`, at most [`MAX_LISTED`].
    pub processes: Vec<String>,
    /// Tables and chains whose names carry the product's name: `table inet crowdstrike`,
    /// `chain ip filter KESL_INPUT`.
    pub netfilter: Vec<String>,
    /// What the vendor documents about the host firewall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// Processes or objects listed per agent, at most.
pub const MAX_LISTED: usize = 8;

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix) && !name.is_empty(),
        None => name == pattern,
    }
}

impl Agent {
    /// Whether `p` is one of this agent's processes.
    pub fn owns(&self, p: &Process) -> bool {
        let argv0 = p.argv0.as_deref().unwrap_or("");
        let exe = p.exe.as_deref().unwrap_or("");
        let named = |n: &str| !n.is_empty() && self.processes.iter().any(|x| name_matches(x, n));
        named(&p.comm)
            || named(base(argv0))
            || named(base(exe))
            || self
                .paths
                .iter()
                .any(|d| argv0.starts_with(d) || exe.starts_with(d))
    }

    /// Whether a netfilter object's name carries one of the product's words (split at
    /// anything but letters and digits, case-insensitive).
    pub fn names(&self, object: &str) -> bool {
        object
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| self.words.contains(&part))
    }
}

/// The agents among `processes`, and those whose names are on tables or chains of `rules`, in
/// the order of [`AGENTS`].
pub fn detect(processes: &[Process], rules: &Ruleset) -> Vec<FoundAgent> {
    let mut out = Vec::new();
    for a in AGENTS {
        let procs: Vec<String> = processes
            .iter()
            .filter(|p| a.owns(p))
            .take(MAX_LISTED)
            .map(|p| {
                let name = p
                    .argv0
                    .as_deref()
                    .map(base)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&p.comm);
                format!("{name} (pid {})", p.pid)
            })
            .collect();
        let mut netfilter: Vec<String> = Vec::new();
        for c in &rules.chains {
            let item = if a.names(&c.table) {
                format!("table {} {}", c.family, c.table)
            } else if a.names(&c.name) {
                format!("chain {} {} {}", c.family, c.table, c.name)
            } else {
                continue;
            };
            if !netfilter.contains(&item) && netfilter.len() < MAX_LISTED {
                netfilter.push(item);
            }
        }
        if !procs.is_empty() || !netfilter.is_empty() {
            out.push(FoundAgent {
                product: a.product,
                processes: procs,
                netfilter,
                note: a.note,
            });
        }
    }
    out
}

/// Parse `ps -eo pid=,args=` (the `--from DIR` form of the process list): each line a pid and
/// the command line; `argv[0]` is its first word. Lines that do not start with a pid are
/// skipped, at most `limit` processes are kept.
pub fn parse_ps(text: &str, limit: usize) -> Vec<Process> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (pid, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let pid: u32 = pid.parse().ok()?;
            let argv0 = rest.split_whitespace().next()?.to_owned();
            Some(Process {
                pid,
                comm: base(&argv0).chars().take(15).collect(),
                argv0: Some(argv0),
                exe: None,
            })
        })
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostfw::iptables_save;

    fn p(pid: u32, comm: &str, argv0: Option<&str>, exe: Option<&str>) -> Process {
        Process {
            pid,
            comm: comm.into(),
            argv0: argv0.map(Into::into),
            exe: exe.map(Into::into),
        }
    }

    #[test]
    fn processes_by_name_argv0_and_install_folder() {
        let procs = [
            p(10, "falcon-sensor", None, None),
            p(
                11,
                "sleep",
                Some("/opt/CrowdStrike/falcond"),
                Some("/usr/bin/sleep"),
            ),
            p(12, "wdavdaemon_unpr", Some("wdavdaemon_unprivileged"), None),
            p(13, "bash", Some("-bash"), Some("/usr/bin/bash")),
            p(14, "sophos_threat_d", None, None),
            p(15, "startd", None, Some("/opt/eset/eea/sbin/startd")),
            p(16, "kesl", Some("/opt/kaspersky/kesl/libexec/kesl"), None),
        ];
        let found = detect(&procs, &Ruleset::default());
        let names: Vec<&str> = found.iter().map(|f| f.product).collect();
        assert_eq!(
            names,
            [
                "Kaspersky Endpoint Security for Linux",
                "ESET Endpoint Security for Linux",
                "CrowdStrike Falcon",
                "Microsoft Defender for Endpoint",
                "Sophos Protection for Linux"
            ]
        );
        let cs = found
            .iter()
            .find(|f| f.product == "CrowdStrike Falcon")
            .unwrap();
        assert_eq!(cs.processes, ["falcon-sensor (pid 10)", "falcond (pid 11)"]);
        assert!(found[0].note.unwrap().contains("60 seconds"));
    }

    #[test]
    fn nothing_for_ordinary_processes() {
        let procs = [
            p(1, "systemd", Some("/sbin/init"), None),
            p(2, "sshd", Some("sshd:"), None),
            p(
                3,
                "pmdalinux",
                Some("/var/lib/pcp/pmdas/linux/pmdalinux"),
                None,
            ),
        ];
        assert!(detect(&procs, &Ruleset::default()).is_empty());
    }

    #[test]
    fn netfilter_objects_by_word() {
        let dump = iptables_save::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n:KESL_INPUT - [0:0]\n:RESET_CHAIN - [0:0]\n:ufw-user-input - [0:0]\n-A INPUT -j KESL_INPUT\nCOMMIT\n",
            crate::Family::Ipv4,
        )
        .unwrap();
        let found = detect(&[], &dump.ruleset);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].product, "Kaspersky Endpoint Security for Linux");
        assert_eq!(found[0].netfilter, ["chain ip filter KESL_INPUT"]);
        assert!(found[0].processes.is_empty());
    }

    #[test]
    fn ps_output() {
        let ps = "    1 /sbin/init splash\n  812 /opt/CrowdStrike/falcond\n  x garbage\n 900\n";
        let procs = parse_ps(ps, 100);
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[1].pid, 812);
        assert_eq!(procs[1].comm, "falcond");
        assert_eq!(parse_ps(ps, 1).len(), 1);
        assert_eq!(detect(&procs, &Ruleset::default()).len(), 1);
    }
}
