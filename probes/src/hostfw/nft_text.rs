//! `nft list ruleset` as text (`nft -a list ruleset`, what a NetBird debug bundle's
//! `nftables.txt` holds; nft(8) "RULES" and "STATEMENTS" for the syntax):
//!
//! ```text
//! table inet filter { # handle 3
//!     chain input { # handle 1
//!         type filter hook input priority filter; policy drop;
//!         ct state established,related accept # handle 4
//!         iifname "wt0" ip saddr 100.64.0.0/10 accept # handle 5
//!         udp dport { 51820, 49152-65535 } counter packets 0 bytes 0 accept # handle 6
//!     }
//!     set allowed { … }
//! }
//! ```
//!
//! Expressions modelled become [`Match`]es (the same ones [`super::nft_json`] produces); any
//! other expression becomes [`Match::Unknown`], so the evaluator reports the rule as undecided
//! instead of skipping it. Sets, maps, flowtables and other objects are skipped. A line that
//! cannot belong anywhere (a rule outside a chain, unbalanced braces) is an error naming it.

use super::iptables_save::icmp_type;
use super::model::{
    BaseChain, Chain, Cidr, CtState, Hook, IfName, Match, Policy, Proto, Rule, RuleAction, RulePos,
    RuleSource, Ruleset, TableFamily, nft_priority,
};
use super::{HostFwError, InputFormat};
use crate::{Family, PortRange};

/// Most lines read (a ruleset of a million lines is not a host firewall).
const MAX_LINES: usize = 1_000_000;

fn syntax(line: usize, detail: impl Into<String>) -> HostFwError {
    HostFwError::Syntax {
        format: InputFormat::NftText,
        line,
        detail: detail.into(),
    }
}

/// Split off a `# …` comment outside quotes; returns (code, handle).
fn strip_comment(line: &str) -> (&str, Option<u64>) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => {
                let code = line.get(..i).unwrap_or("");
                let handle = line
                    .get(i + 1..)
                    .and_then(|r| r.trim().strip_prefix("handle "))
                    .and_then(|h| h.trim().parse().ok());
                return (code, handle);
            }
            _ => {}
        }
    }
    (line, None)
}

fn braces(s: &str) -> i64 {
    let mut quoted = false;
    let mut d = 0i64;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => d += 1,
            '}' if !quoted => d -= 1,
            _ => {}
        }
    }
    d
}

/// Tokens: words, quoted strings (quotes kept), and `{`, `}`, `,`, `;` on their own.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                cur.push(c);
                quoted = true;
            }
            '{' | '}' | ',' | ';' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn family(s: &str) -> Option<TableFamily> {
    Some(match s {
        "ip" => TableFamily::Ip,
        "ip6" => TableFamily::Ip6,
        "inet" => TableFamily::Inet,
        "arp" | "bridge" | "netdev" => TableFamily::Other(s.to_owned()),
        _ => return None,
    })
}

/// `type filter hook input priority filter; policy drop;`
fn base_chain(t: &[String]) -> Option<BaseChain> {
    let pos = |w: &str| t.iter().position(|x| x == w);
    let h = t.get(pos("hook")? + 1)?;
    let p = pos("priority")?;
    let end = t
        .iter()
        .skip(p + 1)
        .position(|x| x == ";")
        .map_or(t.len(), |e| p + 1 + e);
    let prio = nft_priority(&t.get(p + 1..end)?.concat())?;
    let policy = match pos("policy").and_then(|i| t.get(i + 1)).map(String::as_str) {
        Some("drop") => Policy::Drop,
        _ => Policy::Accept,
    };
    Some(BaseChain {
        hook: Hook::from_nft(h),
        priority: prio,
        policy,
    })
}

/// A rule's tokens, walked once.
struct Walk<'a> {
    t: &'a [String],
    i: usize,
}

impl Walk<'_> {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(String::as_str)
    }

    fn next(&mut self) -> Option<&str> {
        let v = self.t.get(self.i).map(String::as_str);
        self.i += 1;
        v
    }

    /// `!=`/`==`/`ne`/`eq`, if present: whether negated.
    fn op(&mut self) -> Option<bool> {
        match self.peek() {
            Some("!=" | "ne") => {
                self.i += 1;
                Some(true)
            }
            Some("==" | "eq") => {
                self.i += 1;
                Some(false)
            }
            Some("<" | ">" | "<=" | ">=" | "lt" | "gt" | "le" | "ge" | "&") => None,
            _ => Some(false),
        }
    }

    /// One value or an anonymous set `{ a, b }`, each element split on commas.
    fn values(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        match self.next() {
            Some("{") => {
                while let Some(v) = self.next() {
                    match v {
                        "}" => break,
                        "," => {}
                        v => out.push(v.to_owned()),
                    }
                }
            }
            Some(v) => out.extend(v.split(',').filter(|x| !x.is_empty()).map(str::to_owned)),
            None => {}
        }
        out
    }
}

fn ifname(v: &str) -> Option<IfName> {
    let v = v.trim_matches('"');
    if v.is_empty() || v.starts_with('@') || v.starts_with('$') {
        return None;
    }
    Some(IfName::with_wildcard(v, '*'))
}

fn port(v: &str) -> Option<PortRange> {
    match v.split_once('-') {
        Some((a, b)) => Some(PortRange {
            start: a.parse().ok()?,
            end: b.parse().ok()?,
        }),
        None => Some(PortRange::single(v.parse().ok()?)),
    }
}

fn all<T>(vals: &[String], f: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    if vals.is_empty() {
        return None;
    }
    vals.iter().map(|v| f(v)).collect()
}

fn l4(p: &str) -> Option<Proto> {
    Proto::parse(p)
}

fn is_verdict(w: &str) -> bool {
    matches!(
        w,
        "accept" | "drop" | "reject" | "return" | "jump" | "goto" | "continue" | "queue"
    )
}

/// Parse one rule's code (comment already removed).
fn rule(code: &str, in_inet: bool) -> (Vec<Match>, RuleAction) {
    let toks = tokens(code);
    let mut w = Walk { t: &toks, i: 0 };
    let mut m: Vec<Match> = Vec::new();
    let mut action = RuleAction::Continue;
    let unknown = |what: &str| Match::Unknown {
        what: what.to_owned(),
    };
    while let Some(tok) = w.next().map(str::to_owned) {
        let start = w.i - 1;
        let mut fail = false;
        match tok.as_str() {
            "meta"
                if matches!(
                    w.peek(),
                    Some("iifname" | "oifname" | "iif" | "oif" | "l4proto" | "nfproto")
                ) =>
            {
                // `meta iifname …` is `iifname …`: re-read the key without `meta`.
                continue;
            }
            "iifname" | "iif" | "oifname" | "oif" => match w.op() {
                Some(negated) => {
                    let vals = w.values();
                    match (
                        vals.as_slice(),
                        ifname(vals.first().map_or("", String::as_str)),
                    ) {
                        ([_], Some(name)) if tok.starts_with('i') => {
                            m.push(Match::InIface { name, negated })
                        }
                        ([_], Some(name)) => m.push(Match::OutIface { name, negated }),
                        _ => fail = true,
                    }
                }
                None => fail = true,
            },
            "ip" | "ip6" => {
                let fam = if tok == "ip" {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                match w.next().map(str::to_owned).as_deref() {
                    Some(field @ ("saddr" | "daddr")) => match w.op() {
                        Some(negated) => match all(&w.values(), Cidr::parse) {
                            Some(nets) => {
                                m.push(Match::Family { family: fam });
                                m.push(if field == "saddr" {
                                    Match::Saddr { nets, negated }
                                } else {
                                    Match::Daddr { nets, negated }
                                });
                            }
                            None => fail = true,
                        },
                        None => fail = true,
                    },
                    Some("protocol" | "nexthdr") => match w.op() {
                        Some(negated) => match all(&w.values(), l4) {
                            Some(protos) => {
                                m.push(Match::Family { family: fam });
                                m.push(Match::Protocol { protos, negated });
                            }
                            None => fail = true,
                        },
                        None => fail = true,
                    },
                    _ => fail = true,
                }
            }
            "tcp" | "udp" | "th" => {
                let proto = match tok.as_str() {
                    "tcp" => Some(Proto::Tcp),
                    "udp" => Some(Proto::Udp),
                    _ => None,
                };
                match w.next().map(str::to_owned).as_deref() {
                    Some(field @ ("dport" | "sport")) => match w.op() {
                        Some(negated) => match all(&w.values(), port) {
                            Some(ranges) if field == "dport" => m.push(Match::Dport {
                                proto,
                                ranges,
                                negated,
                            }),
                            Some(ranges) => m.push(Match::Sport {
                                proto,
                                ranges,
                                negated,
                            }),
                            None => fail = true,
                        },
                        None => fail = true,
                    },
                    _ => fail = true,
                }
            }
            "l4proto" => match w.op() {
                Some(negated) => match all(&w.values(), l4) {
                    Some(protos) => m.push(Match::Protocol { protos, negated }),
                    None => fail = true,
                },
                None => fail = true,
            },
            "nfproto" => match (w.op(), w.values().as_slice()) {
                (Some(neg), [v]) if v == "ipv4" || v == "ipv6" => {
                    let v4 = (v == "ipv4") != neg;
                    m.push(Match::Family {
                        family: if v4 { Family::Ipv4 } else { Family::Ipv6 },
                    });
                }
                _ => fail = true,
            },
            "ct" if w.peek() == Some("state") => {
                w.i += 1;
                match w.op() {
                    Some(negated) => match all(&w.values(), CtState::parse) {
                        Some(states) => m.push(Match::CtState { states, negated }),
                        None => fail = true,
                    },
                    None => fail = true,
                }
            }
            "icmp" | "icmpv6" if w.peek() == Some("type") => {
                w.i += 1;
                let v6 = tok == "icmpv6";
                match w.op() {
                    Some(negated) => match all(&w.values(), |v| icmp_type(v, v6)) {
                        Some(types) => m.push(Match::IcmpType { v6, types, negated }),
                        None => fail = true,
                    },
                    None => fail = true,
                }
            }
            "fib"
                if w.peek() == Some("daddr")
                    && w.t.get(w.i + 1).map(String::as_str) == Some("type") =>
            {
                w.i += 2;
                match w.op() {
                    Some(negated) => {
                        let kinds = w.values().iter().map(|k| k.to_ascii_uppercase()).collect();
                        m.push(Match::AddrType {
                            dst: true,
                            kinds,
                            negated,
                        });
                    }
                    None => fail = true,
                }
            }
            "limit" => {
                // `limit rate [over] N/unit [burst N packets]`: a single new packet is within it
                // unless `over`.
                let mut over = false;
                while let Some(x) = w.peek() {
                    if is_verdict(x) || x == "counter" || x == "log" || x == "comment" {
                        break;
                    }
                    over |= x == "over";
                    w.i += 1;
                }
                if over {
                    m.push(unknown("limit rate over"));
                } else {
                    m.push(Match::Limit);
                }
            }
            "counter" => {
                while matches!(w.peek(), Some("packets" | "bytes")) {
                    w.i += 2;
                }
            }
            "log" => {
                while matches!(
                    w.peek(),
                    Some("prefix" | "level" | "flags" | "group" | "snaplen" | "queue-threshold")
                ) {
                    w.i += 2;
                }
            }
            "comment" => w.i += 1,
            "accept" => action = RuleAction::Accept,
            "drop" => action = RuleAction::Drop,
            "reject" => {
                action = RuleAction::Reject;
                w.i = toks.len();
            }
            "return" => action = RuleAction::Return,
            "continue" => action = RuleAction::Continue,
            "jump" | "goto" => match w.next() {
                Some(c) => {
                    let c = c.trim_matches('"').to_owned();
                    action = if tok == "jump" {
                        RuleAction::Jump(c)
                    } else {
                        RuleAction::Goto(c)
                    };
                }
                None => action = RuleAction::Unknown(tok.clone()),
            },
            other => {
                // An expression or statement not modelled: up to the next verdict, it may or may
                // not match (a statement without a verdict, such as `meta mark set`, leaves the
                // rule's action unchanged).
                let from = start;
                while w.peek().is_some_and(|x| !is_verdict(x)) {
                    w.i += 1;
                }
                let what = toks.get(from..w.i).map(|s| s.join(" ")).unwrap_or_default();
                if matches!(
                    other,
                    "masquerade" | "snat" | "dnat" | "redirect" | "queue" | "notrack"
                ) {
                    action = RuleAction::Unknown(what);
                } else {
                    m.push(unknown(&what));
                }
                continue;
            }
        }
        if fail {
            let from = start;
            while w.peek().is_some_and(|x| !is_verdict(x) && x != "counter") {
                w.i += 1;
            }
            let what = toks.get(from..w.i).map(|s| s.join(" ")).unwrap_or_default();
            m.push(unknown(&what));
        }
    }
    if !in_inet {
        // `ip saddr …` in an `ip` table: the family is the table's anyway.
        m.retain(|x| !matches!(x, Match::Family { .. }) || in_inet);
    }
    (m, action)
}

/// Parse the text of `nft list ruleset` (with or without `-a`).
pub fn parse(text: &str) -> Result<Ruleset, HostFwError> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut table: Option<(TableFamily, String)> = None;
    let mut in_chain = false;
    // Depth of an object block being skipped (set, map, flowtable …), and of a rule spanning lines.
    let mut skip_depth: i64 = 0;
    let mut pending: Option<(usize, String, Option<u64>)> = None;
    for (n, raw) in text.lines().enumerate().take(MAX_LINES) {
        let line = n + 1;
        let (code, handle) = strip_comment(raw);
        let code = code.trim();
        if let Some((l0, mut acc, h0)) = pending.take() {
            acc.push(' ');
            acc.push_str(code);
            if braces(&acc) > 0 {
                pending = Some((l0, acc, h0.or(handle)));
            } else if let Some(c) = chains.last_mut() {
                push_rule(c, l0, &acc, h0.or(handle));
            }
            continue;
        }
        if skip_depth > 0 {
            skip_depth += braces(code);
            continue;
        }
        if code.is_empty() {
            continue;
        }
        let t = tokens(code);
        let first = t.first().map(String::as_str).unwrap_or("");
        match (table.is_some(), in_chain, first) {
            (false, _, "table") => {
                let (fam, name) = match (t.get(1), t.get(2)) {
                    (Some(f), Some(n)) if n != "{" => (
                        family(f)
                            .ok_or_else(|| syntax(line, format!("unknown table family {f:?}")))?,
                        n.clone(),
                    ),
                    (Some(n), _) => (TableFamily::Ip, n.clone()),
                    _ => return Err(syntax(line, "table without a name")),
                };
                table = Some((fam, name));
            }
            (false, _, _) => return Err(syntax(line, "expected `table FAMILY NAME {`")),
            (true, false, "chain") => {
                let Some((fam, tname)) = table.clone() else {
                    return Err(syntax(line, "chain outside a table"));
                };
                let name = t
                    .get(1)
                    .filter(|n| *n != "{")
                    .ok_or_else(|| syntax(line, "chain without a name"))?
                    .trim_matches('"')
                    .to_owned();
                chains.push(Chain {
                    source: RuleSource::Nft,
                    family: fam,
                    table: tname,
                    name,
                    base: None,
                    rules: Vec::new(),
                });
                in_chain = true;
            }
            (true, false, "}") => table = None,
            (true, false, _) => {
                // set, map, flowtable, counter, quota, ct helper …: skip the block.
                let d = braces(code);
                if d > 0 {
                    skip_depth = d;
                }
            }
            (true, true, "}") => in_chain = false,
            (true, true, "type") => {
                if let Some(c) = chains.last_mut() {
                    c.base = Some(
                        base_chain(&t)
                            .ok_or_else(|| syntax(line, "base chain without hook or priority"))?,
                    );
                }
            }
            (true, true, "policy") => {
                if let Some(b) = chains.last_mut().and_then(|c| c.base.as_mut()) {
                    b.policy = if t.get(1).map(String::as_str) == Some("drop") {
                        Policy::Drop
                    } else {
                        Policy::Accept
                    };
                }
            }
            (true, true, "comment" | "devices" | "flags") => {}
            (true, true, _) => {
                if braces(code) > 0 {
                    pending = Some((line, code.to_owned(), handle));
                } else if let Some(c) = chains.last_mut() {
                    push_rule(c, line, code, handle);
                }
            }
        }
    }
    if pending.is_some() || skip_depth > 0 {
        return Err(syntax(text.lines().count(), "unbalanced braces at the end"));
    }
    Ok(Ruleset { chains })
}

fn push_rule(c: &mut Chain, line: usize, code: &str, handle: Option<u64>) {
    let inet = c.family == TableFamily::Inet;
    let (matches, action) = rule(code, inet);
    let index = c.rules.len() + 1;
    c.rules.push(Rule {
        text: code.to_owned(),
        pos: RulePos {
            index,
            line: Some(line),
            handle,
        },
        matches,
        action,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::hostfw::eval::{IfaceSpec, L4, Packet, PacketVerdict, evaluate};

    const RULESET: &str = "table inet hostfw { # handle 3\n\
\tset allowed { # handle 2\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.1,\n\t\t\t     192.0.2.2 }\n\t}\n\
\tchain input { # handle 1\n\
\t\ttype filter hook input priority filter; policy drop;\n\
\t\tct state established,related counter packets 9 bytes 900 accept # handle 4\n\
\t\tiif \"lo\" accept # handle 5\n\
\t\tip saddr @allowed accept # handle 6\n\
\t\tudp dport { 51820, 60000-60010 } accept # handle 7\n\
\t\tiifname \"wt*\" ip saddr 100.64.0.0/10 jump from_vpn # handle 8\n\
\t\tlog prefix \"dropped: \" level info drop # handle 9\n\
\t}\n\
\tchain from_vpn { # handle 10\n\
\t\ttcp dport != 22 accept # handle 11\n\
\t}\n\
}\n\
table ip netbird {\n\
\tchain netbird-acl-input-rules {\n\
\t\ttype filter hook input priority 0; policy accept\n\
\t}\n\
}\n";

    fn pkt(iif: &str, l4: L4) -> Packet {
        let vpn = Cidr::parse("100.64.0.0/10").unwrap();
        Packet::within(Family::Ipv4, IfaceSpec::Named(iif.into()), vpn, l4)
    }

    #[test]
    fn chains_rules_and_verdicts() {
        let rs = parse(RULESET).unwrap();
        assert_eq!(rs.chains.len(), 3);
        let input = &rs.chains[0];
        assert_eq!(input.base.as_ref().unwrap().policy, Policy::Drop);
        assert_eq!(input.rules.len(), 6);
        assert_eq!(input.rules[0].pos.handle, Some(4));
        assert!(matches!(
            input.rules[2].matches[..],
            [Match::Family { .. }, Match::Unknown { .. }] | [Match::Unknown { .. }]
        ));
        let nb = &rs.chains[2];
        assert_eq!(nb.base.as_ref().unwrap().priority, 0);
        assert_eq!(nb.base.as_ref().unwrap().policy, Policy::Accept);
        // TCP 8080 from the VPN on wt0: jumps to from_vpn, accepted there.
        let e = evaluate(
            &rs,
            &pkt(
                "wt0",
                L4::Tcp {
                    dport: PortRange::single(8080),
                },
            ),
        );
        assert_eq!(e.verdict, PacketVerdict::Accept, "{e:?}");
        // TCP 22 from the VPN: from_vpn returns, then the log+drop rule drops — unless the
        // source is in the named set, which is not modelled: uncertain, naming that rule.
        let e = evaluate(
            &rs,
            &pkt(
                "wt0",
                L4::Tcp {
                    dport: PortRange::single(22),
                },
            ),
        );
        assert_eq!(e.verdict, PacketVerdict::Uncertain, "{e:?}");
        assert_eq!(e.uncertain_rules.len(), 1);
        assert!(e.uncertain_rules[0].to_string().contains("@allowed"));
        let d = e.deciding.unwrap().to_string();
        assert!(d.contains("log prefix"), "{d}");
        // UDP 51820 on eth0: the set rule accepts (after the uncertain @allowed rule).
        let e = evaluate(
            &rs,
            &pkt(
                "eth0",
                L4::Udp {
                    dport: PortRange::single(51820),
                },
            ),
        );
        assert_ne!(e.verdict, PacketVerdict::Drop, "{e:?}");
    }

    #[test]
    fn bad_text_names_the_line() {
        let e = parse("chain x {\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("table inet t {\n\tchain c {\n\t\ttcp dport { 1,\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unbalanced"), "{e}");
        let e = parse("table weird t {\n}\n").unwrap_err().to_string();
        assert!(e.contains("family"), "{e}");
        assert!(parse("").unwrap().chains.is_empty());
    }
}
