//! `stunmap sweep`'s report for people (its [`Doc`]) and for Prometheus (its metrics).

use super::*;
use crate::report::doc::columns;
use crate::report::prom::flag;

pub(super) fn outcome_mark(o: Outcome) -> Mark {
    match o {
        Outcome::Ok => Mark::new("ok", Tone::Good),
        Outcome::Degraded => Mark::new("degraded", Tone::Warn),
        Outcome::Interrupted => Mark::new("interrupted", Tone::Neutral),
        _ => Mark::new("blocked", Tone::Bad),
    }
}

pub(super) fn udp_mark(s: UdpState) -> Mark {
    let tone = match s {
        UdpState::Answered => Tone::Good,
        UdpState::Silent | UdpState::PortUnreachable | UdpState::Unreachable => Tone::Bad,
        UdpState::Error => Tone::Warn,
        UdpState::NotProbed => Tone::Neutral,
    };
    Mark::new(s.name(), tone)
}

pub(super) fn tcp_mark(s: TcpState) -> Mark {
    let tone = match s {
        TcpState::Open => Tone::Good,
        // The target's own RST: the path lets the port through.
        TcpState::Refused => Tone::Warn,
        TcpState::Filtered | TcpState::Unreachable => Tone::Bad,
        TcpState::Error => Tone::Warn,
        TcpState::NotProbed => Tone::Neutral,
    };
    Mark::new(s.name(), tone)
}

/// What a UDP port's row says besides its state.
pub(super) fn udp_detail(u: &UdpPortResult) -> String {
    let mut parts = Vec::new();
    if let Some(rtt) = u.rtt {
        parts.push(format!("RTT {}", duration(rtt)));
    }
    if let Some(m) = u.mapped {
        parts.push(format!("mapped {m}"));
    }
    if let Some(c) = u.error_code {
        parts.push(format!("STUN error {c}"));
    }
    if let Some(sw) = &u.software {
        parts.push(format!("software \"{sw}\""));
    }
    if let Some(e) = &u.error {
        parts.push(e.to_string());
    }
    match u.state {
        UdpState::Silent => parts.push(format!("{} requests, no answer", u.tries)),
        UdpState::NotProbed => parts.push("stopped before an answer or its timeout".into()),
        _ => {}
    }
    parts.join(", ")
}

/// Ports as ranges: "443–1023, 3478".
pub(super) fn port_list(ports: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = ports.get(i) {
        let mut end = start;
        while ports
            .get(i + 1)
            .is_some_and(|&n| Some(n) == end.checked_add(1))
        {
            i += 1;
            end = ports.get(i).copied().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    out.join(", ")
}

pub(super) fn headline(r: &SweepReport) -> String {
    if let Some(why) = &r.not_probed {
        return format!("Not probed: {why}");
    }
    let mut parts = Vec::new();
    if !r.udp.is_empty() {
        parts.push(format!(
            "UDP {} of {} answered",
            r.udp_summary.answered,
            r.udp.len()
        ));
    }
    if let Some(t) = &r.tcp {
        let mut counts = vec![format!("{} open", t.open)];
        for (n, what) in [
            (t.refused, "refused"),
            (t.filtered, "filtered"),
            (t.unreachable, "unreachable"),
            (t.error, "error"),
            (t.not_probed, "not probed"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!(
            "TCP {}–{}: {} of {} tried",
            t.range_start,
            t.range_end,
            counts.join(", "),
            t.tried
        ));
    }
    format!("{}: {}", r.target, parts.join("; "))
}

/// Marks for the port map: every port of a small sweep, one mark per stretch of the range
/// for a large one (the worst state in it), so the page stays small.
pub(super) fn tcp_lane(r: &SweepReport, t: &TcpSummary) -> PortLane {
    const MAX_MARKS: usize = 960;
    let results = &r.tcp_results;
    let marks: Vec<PortMark> = if results.len() <= MAX_MARKS {
        results
            .iter()
            .map(|p| PortMark {
                port: p.port,
                mark: tcp_mark(p.state),
                label: p.port.to_string(),
                title: format!(
                    "TCP {}: {}{}",
                    p.port,
                    p.state,
                    if matches!(p.stun, StunOverTcp::Answered { .. }) {
                        ", STUN answered"
                    } else {
                        ""
                    }
                ),
            })
            .collect()
    } else {
        results
            .chunks(results.len().div_ceil(MAX_MARKS))
            .filter_map(|chunk| {
                let first = chunk.first()?;
                let last = chunk.last()?;
                let worst = chunk
                    .iter()
                    .map(|p| p.state)
                    .max_by_key(|s| severity(*s))
                    .unwrap_or(first.state);
                let mut by: BTreeMap<&'static str, usize> = BTreeMap::new();
                for p in chunk {
                    *by.entry(p.state.name()).or_default() += 1;
                }
                let what: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
                Some(PortMark {
                    port: first.port,
                    mark: tcp_mark(worst),
                    label: first.port.to_string(),
                    title: format!("TCP {}–{}: {}", first.port, last.port, what.join(", ")),
                })
            })
            .collect()
    };
    PortLane {
        label: format!(
            "TCP {}–{} ({}): green open, amber refused by the target, red filtered or unreachable",
            t.range_start,
            t.range_end,
            if t.full { "every port" } else { "sample" }
        ),
        style: LaneStyle::Ticks {
            start: t.range_start,
            end: t.range_end,
        },
        ports: marks,
    }
}

/// How bad a state is for the port map's stretches.
pub(super) fn severity(s: TcpState) -> u8 {
    match s {
        TcpState::Open => 0,
        TcpState::Refused => 1,
        TcpState::NotProbed => 2,
        TcpState::Error => 3,
        TcpState::Unreachable => 4,
        TcpState::Filtered => 5,
    }
}

pub(super) fn document(r: &SweepReport, run: &RunInfo) -> Doc {
    let mut doc = Doc::new("stunmap sweep", headline(r));
    doc.mark = Some(outcome_mark(run.exit_code));
    let what = match (&r.tcp, r.full) {
        (None, _) => "UDP only".to_string(),
        (Some(t), true) => format!("every port of {}–{}", t.range_start, t.range_end),
        (Some(t), false) => format!(
            "a sample of {} ports of {}–{} (seed {})",
            t.tried, t.range_start, t.range_end, r.seed
        ),
    };
    let mode = match r.mode {
        Mode::Connect => "connect",
        Mode::Raw => "raw SYN",
    };
    let host = if r.host == r.target.to_string() {
        r.host.clone()
    } else {
        format!("{} ({})", r.host, r.target)
    };
    doc.summary.push(format!(
        "{host}: {mode} sweep of {what}; {:.2} s, exit {}",
        run.elapsed_seconds,
        run.exit_code.code()
    ));
    let mut lanes = Vec::new();
    if !r.udp.is_empty() {
        lanes.push(PortLane {
            label: "UDP ports (STUN Binding): green answered, red silent or rejected".into(),
            style: LaneStyle::Boxes,
            ports: r
                .udp
                .iter()
                .map(|u| PortMark {
                    port: u.port,
                    mark: udp_mark(u.state),
                    label: format!("udp {}", u.port),
                    title: format!("UDP {}: {} {}", u.port, u.state, udp_detail(u)),
                })
                .collect(),
        });
    }
    if let Some(t) = &r.tcp {
        lanes.push(tcp_lane(r, t));
    }
    doc.push(Section::new("Port map").block(Block::Ports {
        id: "port-map".into(),
        lanes,
    }));
    if !r.udp.is_empty() {
        let rows = r
            .udp
            .iter()
            .map(|u| {
                vec![
                    Cell::from(format!("udp/{}", u.port)),
                    Cell::from(udp_mark(u.state)),
                    Cell::from(udp_detail(u)),
                ]
            })
            .collect();
        doc.push(Section::new("UDP").block(Block::Table {
            header: columns(["port", "state", "detail"]),
            rows,
        }));
    }
    if let Some(t) = &r.tcp {
        let mut s = Section::new(format!("TCP {}–{}", t.range_start, t.range_end));
        s.push(Block::Text(t.text.clone()));
        s.push(Block::Table {
            header: columns(["ports", "state", "tried", "STUN answered"]),
            rows: t
                .ranges
                .iter()
                .map(|run| {
                    vec![
                        Cell::from(if run.start == run.end {
                            run.start.to_string()
                        } else {
                            format!("{}–{}", run.start, run.end)
                        }),
                        Cell::from(tcp_mark(run.state)),
                        Cell::from(run.tried.to_string()),
                        Cell::from(run.stun_answered.to_string()),
                    ]
                })
                .collect(),
        });
        let stun: Vec<u16> = r
            .tcp_results
            .iter()
            .filter(|p| matches!(p.stun, StunOverTcp::Answered { .. }))
            .map(|p| p.port)
            .collect();
        if !stun.is_empty() {
            s.push(Block::Text(format!(
                "STUN answered over TCP on {}",
                port_list(&stun)
            )));
        }
        doc.push(s);
    }
    if let Some(raw) = &r.raw {
        let mut s = Section::new("Raw SYN answers");
        s.push(Block::Fields(vec![
            ("SYN-ACK TTLs".into(), join(&raw.syn_ack_ttls)),
            ("RST TTLs".into(), join(&raw.rst_ttls)),
            ("ICMP from".into(), join(&raw.icmp_sources)),
        ]));
        s.push(Block::List(raw.notes.clone()));
        doc.push(s);
    }
    if !r.errors.is_empty() || r.not_probed.is_some() {
        let mut s = Section::new("Not probed");
        s.push(Block::List(
            r.errors
                .iter()
                .map(|e| format!("{} ({}): {} ports", e.errno, e.message, e.ports))
                .collect(),
        ));
        let left = r.udp_summary.not_probed + r.tcp.as_ref().map_or(0, |t| t.not_probed);
        if left > 0 {
            s.push(Block::Text(format!(
                "{left} ports were not tried: the run stopped first"
            )));
        }
        doc.push(s);
    }
    let pc = &r.pacing;
    doc.push(Section::new("Pacing").block(Block::Fields(vec![
        (
            "rate".into(),
            if pc.start_pps == pc.ceiling_pps && pc.final_pps == pc.ceiling_pps {
                format!("{}/s throughout (--rate)", pc.ceiling_pps)
            } else {
                format!(
                    "{}/s at the start, {}/s at the most (ceiling {}/s), {}/s at the end",
                    pc.start_pps, pc.peak_pps, pc.ceiling_pps, pc.final_pps
                )
            },
        ),
        (
            "timeout".into(),
            format!(
                "{} per try at the end ({} round-trip samples{})",
                duration(pc.timeout),
                pc.rtt_samples,
                pc.srtt
                    .map(|s| format!(", SRTT {}", duration(s)))
                    .unwrap_or_default()
            ),
        ),
        (
            "back-offs".into(),
            format!(
                "{} on loss, {} on rate-limited ICMP; {} resends",
                pc.loss_backoffs, pc.icmp_backoffs, pc.resends
            ),
        ),
    ])));
    doc
}

pub(super) fn join<T: std::fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median and largest of some durations, seconds.
pub(super) fn spread(mut v: Vec<f64>) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = v.get(v.len() / 2).copied()?;
    let max = v.last().copied()?;
    Some((median, max))
}

pub(super) fn metrics(r: &SweepReport, run: &RunInfo, w: &mut Writer) {
    let target = r.target.to_string();
    if let Some(t) = &r.tcp {
        let range = format!("{}-{}", t.range_start, t.range_end);
        w.family(
            "stunmap_sweep_tcp_ports",
            "gauge",
            "TCP ports of the swept range by state (open, refused, filtered, unreachable, error, not-probed).",
        );
        for (state, n) in [
            (TcpState::Open, t.open),
            (TcpState::Refused, t.refused),
            (TcpState::Filtered, t.filtered),
            (TcpState::Unreachable, t.unreachable),
            (TcpState::Error, t.error),
            (TcpState::NotProbed, t.not_probed),
        ] {
            w.sample(
                "stunmap_sweep_tcp_ports",
                &[
                    ("target", &target),
                    ("range", &range),
                    ("state", state.name()),
                ],
                n as f64,
            );
        }
        w.gauge(
            "stunmap_sweep_tcp_range_ports",
            "Size of the swept TCP range (the sample is drawn from it).",
            &[("target", &target), ("range", &range)],
            f64::from(t.range_end) - f64::from(t.range_start) + 1.0,
        );
        let times: Vec<f64> = r
            .tcp_results
            .iter()
            .filter_map(|p| p.connect_time.map(|d| d.as_secs_f64()))
            .collect();
        if let Some((median, max)) = spread(times) {
            w.family(
                "stunmap_sweep_tcp_rtt_seconds",
                "gauge",
                "Time from SYN to SYN-ACK, RST or ICMP error over the answered TCP ports.",
            );
            for (stat, v) in [("median", median), ("max", max)] {
                w.sample(
                    "stunmap_sweep_tcp_rtt_seconds",
                    &[("target", &target), ("range", &range), ("stat", stat)],
                    v,
                );
            }
        }
    }
    if !r.udp.is_empty() {
        w.family(
            "stunmap_sweep_udp_ports",
            "gauge",
            "UDP ports by what a STUN Binding request found (answered, silent, port-unreachable, unreachable, error, not-probed).",
        );
        let s = &r.udp_summary;
        for (state, n) in [
            (UdpState::Answered, s.answered),
            (UdpState::Silent, s.silent),
            (UdpState::PortUnreachable, s.port_unreachable),
            (UdpState::Unreachable, s.unreachable),
            (UdpState::Error, s.error),
            (UdpState::NotProbed, s.not_probed),
        ] {
            w.sample(
                "stunmap_sweep_udp_ports",
                &[("target", &target), ("state", state.name())],
                n as f64,
            );
        }
        w.family(
            "stunmap_sweep_udp_answered",
            "gauge",
            "1 when the UDP port answered a STUN Binding request, 0 otherwise.",
        );
        for u in &r.udp {
            let port = u.port.to_string();
            w.sample(
                "stunmap_sweep_udp_answered",
                &[("target", &target), ("port", &port)],
                flag(u.state == UdpState::Answered),
            );
        }
        if r.udp.iter().any(|u| u.rtt.is_some()) {
            w.family(
                "stunmap_sweep_udp_rtt_seconds",
                "gauge",
                "Round-trip time of the STUN Binding transaction that a UDP port answered.",
            );
            for u in &r.udp {
                if let Some(rtt) = u.rtt {
                    let port = u.port.to_string();
                    w.sample(
                        "stunmap_sweep_udp_rtt_seconds",
                        &[("target", &target), ("port", &port)],
                        rtt.as_secs_f64(),
                    );
                }
            }
        }
    }
    w.gauge(
        "stunmap_sweep_peak_rate_pps",
        "Highest send rate the sweep's pacing reached, packets per second.",
        &[("target", &target)],
        f64::from(r.pacing.peak_pps),
    );
    w.gauge(
        "stunmap_sweep_duration_seconds",
        "How long the sweep ran.",
        &[("target", &target)],
        run.elapsed_seconds,
    );
    w.gauge(
        "stunmap_sweep_interrupted",
        "1 when the sweep was stopped early (signal or deadline): partial results.",
        &[("target", &target)],
        flag(run.partial()),
    );
}
