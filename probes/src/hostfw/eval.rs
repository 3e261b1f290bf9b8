//! Walk a packet description through the input hook.
//!
//! Every base chain on the `input` hook that sees the packet's family runs, in priority order.
//! A packet is delivered only if every one of them accepts it: an accept ends one base chain,
//! a drop or reject in any base chain ends the packet. Inside a chain, rules run in order;
//! `jump` pushes a chain, `goto` replaces the current one, `return` and the end of a non-base
//! chain go back to the caller, the end of a base chain applies its policy.
//!
//! A match the evaluator cannot decide (an unknown match, a prefix that only partly overlaps the
//! described addresses) forks the walk: both outcomes are followed. If they agree the verdict
//! stands; if not the verdict is [`PacketVerdict::Uncertain`] and the undecided rules are named.

use std::fmt;

use serde::Serialize;

use super::model::{
    Chain, Cidr, CtState, Hook, IfName, Match, Policy, Proto, Rule, RuleAction, RulePos,
    RuleSource, Ruleset, TableFamily,
};
use crate::{Family, PortRange};

/// Interface a packet arrives on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IfaceSpec {
    /// A known interface.
    Named(String),
    /// Some interface whose name is unknown, known not to be any of `not`.
    Unnamed {
        /// Names it is not.
        not: Vec<String>,
    },
}

/// What is known about an address of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddrSpec {
    /// The address lies somewhere in this prefix.
    pub within: Cidr,
    /// The address is a unicast address of this host (so never multicast or broadcast).
    pub local: bool,
}

/// Transport part of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "proto")]
pub enum L4 {
    /// TCP SYN to a port in the range.
    Tcp {
        /// Destination ports.
        dport: PortRange,
    },
    /// UDP to a port in the range.
    Udp {
        /// Destination ports.
        dport: PortRange,
    },
    /// ICMP / ICMPv6 echo request (ping).
    Echo,
}

/// The first packet of a new inbound connection (conntrack state NEW).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// IP version.
    pub family: Family,
    /// Arrival interface.
    pub iif: IfaceSpec,
    /// Source.
    pub saddr: AddrSpec,
    /// Destination (this host).
    pub daddr: AddrSpec,
    /// Transport.
    pub l4: L4,
}

impl Packet {
    /// A packet of `family` arriving on `iif` from an address in `net` for this host's own
    /// address in it.
    pub(crate) fn within(family: Family, iif: IfaceSpec, net: Cidr, l4: L4) -> Packet {
        Packet {
            family,
            iif,
            saddr: AddrSpec {
                within: net,
                local: false,
            },
            daddr: AddrSpec {
                within: net,
                local: true,
            },
            l4,
        }
    }

    fn proto(&self) -> Proto {
        match (self.l4, self.family) {
            (L4::Tcp { .. }, _) => Proto::Tcp,
            (L4::Udp { .. }, _) => Proto::Udp,
            (L4::Echo, Family::Ipv4) => Proto::Icmp,
            (L4::Echo, Family::Ipv6) => Proto::Icmpv6,
        }
    }
}

/// Final verdict for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketVerdict {
    /// Delivered.
    Accept,
    /// Silently dropped.
    Drop,
    /// Dropped with an error sent back.
    Reject,
    /// Depends on rules the evaluator could not decide.
    Uncertain,
}

impl PacketVerdict {
    /// Drop or reject.
    pub fn blocks(self) -> bool {
        matches!(self, PacketVerdict::Drop | PacketVerdict::Reject)
    }
}

impl fmt::Display for PacketVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketVerdict::Accept => "accepted",
            PacketVerdict::Drop => "dropped",
            PacketVerdict::Reject => "rejected",
            PacketVerdict::Uncertain => "uncertain",
        })
    }
}

/// What decided: a rule or a chain policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Decider {
    /// A rule.
    Rule {
        /// Position.
        #[serde(flatten)]
        pos: RulePos,
        /// Text as the tool prints it.
        text: String,
    },
    /// The base chain's policy.
    Policy {
        /// The policy.
        policy: Policy,
    },
    /// Something the evaluator gave up on (jump to a missing chain, loop).
    Limit {
        /// Why.
        reason: String,
    },
}

/// A rule or policy, with the table and chain it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Tool.
    pub source: RuleSource,
    /// Table family.
    pub family: TableFamily,
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// Rule or policy.
    #[serde(flatten)]
    pub by: Decider,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let where_ = match self.source {
            RuleSource::Nft => format!(
                "nft table {} {} chain {}",
                self.family, self.table, self.chain
            ),
            s => format!("{s} table {} chain {}", self.table, self.chain),
        };
        match &self.by {
            Decider::Rule { pos, text } => {
                write!(f, "{where_}, rule {}", pos.index)?;
                if let Some(h) = pos.handle {
                    write!(f, " (handle {h})")?;
                }
                if let Some(l) = pos.line {
                    write!(f, " (line {l})")?;
                }
                write!(f, ": {text}")
            }
            Decider::Policy { policy } => {
                let p = match (self.source, policy) {
                    (RuleSource::Nft, Policy::Accept) => "policy accept",
                    (RuleSource::Nft, Policy::Drop) => "policy drop",
                    (_, Policy::Accept) => "policy ACCEPT",
                    (_, Policy::Drop) => "policy DROP",
                };
                write!(f, "{where_}: {p} (no rule matched)")
            }
            Decider::Limit { reason } => write!(f, "{where_}: {reason}"),
        }
    }
}

/// Outcome of one base chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainStep {
    /// Verdict of this base chain alone.
    pub verdict: PacketVerdict,
    /// What decided it (for an uncertain verdict: one possible outcome).
    pub decided_by: Decision,
    /// The base chain: where the packet entered.
    pub base_chain: String,
    /// Its table.
    pub table: String,
    /// Priority of the base chain.
    pub priority: i32,
    /// Its policy.
    pub policy: Policy,
}

/// Result of evaluating a packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Overall verdict.
    pub verdict: PacketVerdict,
    /// The rule or policy that decided (the drop, or the accept that let the packet through the
    /// last chain that could have dropped it). `None` when no base chain is on the input hook.
    pub deciding: Option<Decision>,
    /// Every base chain on the input hook, in the order the kernel runs them.
    pub chains: Vec<ChainStep>,
    /// Rules whose match could not be decided and that changed the outcome.
    pub uncertain_rules: Vec<Decision>,
}

/// How many undecided forks one base chain may take before the evaluator gives up.
const MAX_LEAVES: usize = 256;
/// Deepest jump stack followed (the kernel's own limit is in this order too).
const MAX_DEPTH: usize = 64;
/// Deepest nesting of undecided forks followed (bounds recursion).
const MAX_FORK_DEPTH: usize = 32;
/// Rule visits one packet's evaluation may make across all its base chains and forks. The
/// other limits bound the number of walks, not their length: each of up to [`MAX_LEAVES`]
/// walks of every base chain can visit a long chain again (and a chain that jumps back into
/// itself up to [`MAX_DEPTH`] times), so a hostile ruleset of 8.6 MB took 19 s to evaluate
/// before this limit and 0.5 s with it. A real input chain is walked in a small part of it.
const MAX_VISITS: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }

    fn negate_if(self, negated: bool) -> Tri {
        match (self, negated) {
            (Tri::Yes, true) => Tri::No,
            (Tri::No, true) => Tri::Yes,
            (t, _) => t,
        }
    }

    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        }
    }
}

fn match_iface(spec: &IfaceSpec, pat: &IfName) -> Tri {
    match spec {
        IfaceSpec::Named(n) => Tri::from_bool(pat.fits(n)),
        IfaceSpec::Unnamed { not } => {
            if !pat.prefix && not.iter().any(|n| n == &pat.name) {
                Tri::No
            } else {
                Tri::Maybe
            }
        }
    }
}

fn match_addr(spec: &AddrSpec, nets: &[Cidr]) -> Tri {
    let mut result = Tri::No;
    for net in nets {
        if net.is_v4() != spec.within.is_v4() {
            continue;
        }
        if net.covers(&spec.within) {
            return Tri::Yes;
        }
        if !net.overlaps(&spec.within) || (spec.local && is_never_local(net)) {
            continue;
        }
        result = Tri::Maybe;
    }
    result
}

/// Multicast and limited-broadcast prefixes never hold a host's unicast address.
fn is_never_local(net: &Cidr) -> bool {
    let multicast = if net.is_v4() {
        "224.0.0.0/4"
    } else {
        "ff00::/8"
    };
    let covered_by = |s: &str| Cidr::parse(s).is_some_and(|m| m.covers(net));
    covered_by(multicast) || (net.is_v4() && covered_by("255.255.255.255/32"))
}

/// A destination (`dst`) or source port match, `negated` or not.
fn port_match(
    pkt: &Packet,
    proto: Option<Proto>,
    ranges: &[PortRange],
    negated: bool,
    dst: bool,
) -> Tri {
    let t = match_ports(pkt, proto, ranges, dst);
    // `! --dport` still requires the protocol.
    if negated && proto.is_some_and(|p| p != pkt.proto()) {
        Tri::No
    } else {
        t.negate_if(negated)
    }
}

fn match_ports(pkt: &Packet, proto: Option<Proto>, ranges: &[PortRange], dst: bool) -> Tri {
    let p = pkt.proto();
    if let Some(want) = proto
        && want != p
    {
        return Tri::No;
    }
    let dport = match pkt.l4 {
        L4::Tcp { dport } | L4::Udp { dport } => dport,
        // No ports on ICMP: a port match never holds.
        L4::Echo => return Tri::No,
    };
    if !dst {
        // The peer's source port is not known.
        return Tri::Maybe;
    }
    let mut result = Tri::No;
    for r in ranges {
        if r.start <= dport.start && dport.end <= r.end {
            return Tri::Yes;
        }
        if r.start <= dport.end && dport.start <= r.end {
            result = Tri::Maybe;
        }
    }
    result
}

fn match_one(pkt: &Packet, m: &Match) -> Tri {
    match m {
        Match::InIface { name, negated } => match_iface(&pkt.iif, name).negate_if(*negated),
        Match::OutIface { negated, .. } => Tri::from_bool(*negated),
        Match::Saddr { nets, negated } => match_addr(&pkt.saddr, nets).negate_if(*negated),
        Match::Daddr { nets, negated } => match_addr(&pkt.daddr, nets).negate_if(*negated),
        Match::Protocol { protos, negated } => {
            Tri::from_bool(protos.contains(&pkt.proto())).negate_if(*negated)
        }
        Match::Family { family } => Tri::from_bool(*family == pkt.family),
        Match::Dport {
            proto,
            ranges,
            negated,
        } => port_match(pkt, *proto, ranges, *negated, true),
        Match::Sport {
            proto,
            ranges,
            negated,
        } => port_match(pkt, *proto, ranges, *negated, false),
        Match::CtState { states, negated } => {
            Tri::from_bool(states.contains(&CtState::New)).negate_if(*negated)
        }
        Match::IcmpType { v6, types, negated } => {
            let icmp = if *v6 { Proto::Icmpv6 } else { Proto::Icmp };
            if pkt.proto() != icmp {
                return Tri::No;
            }
            let echo = if *v6 { 128 } else { 8 };
            Tri::from_bool(types.is_empty() || types.contains(&echo)).negate_if(*negated)
        }
        Match::AddrType {
            dst,
            kinds,
            negated,
        } => {
            let spec = if *dst { &pkt.daddr } else { &pkt.saddr };
            let mut t = Tri::No;
            for k in kinds {
                let here = match k.as_str() {
                    "LOCAL" if spec.local => Tri::Yes,
                    "UNICAST" if spec.local => Tri::Yes,
                    "BROADCAST" | "MULTICAST" | "ANYCAST" | "BLACKHOLE" | "UNREACHABLE"
                    | "PROHIBIT" | "NAT" | "THROW" | "XRESOLVE"
                        if spec.local =>
                    {
                        Tri::No
                    }
                    _ => Tri::Maybe,
                };
                t = match (t, here) {
                    (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
                    (Tri::Maybe, _) | (_, Tri::Maybe) => Tri::Maybe,
                    _ => Tri::No,
                };
            }
            t.negate_if(*negated)
        }
        Match::Limit => Tri::Yes,
        Match::Unknown { .. } => Tri::Maybe,
    }
}

fn match_rule(pkt: &Packet, rule: &Rule) -> Tri {
    rule.matches
        .iter()
        .fold(Tri::Yes, |acc, m| acc.and(match_one(pkt, m)))
}

/// One finished walk through a base chain.
#[derive(Clone, Debug)]
struct Leaf {
    verdict: PacketVerdict,
    by: Decision,
    /// Undecided rules assumed on the way, with the assumption taken.
    assumed: Vec<(Decision, bool)>,
}

struct Walker<'a> {
    rs: &'a Ruleset,
    pkt: &'a Packet,
    leaves: Vec<Leaf>,
    /// Forks currently open (recursion depth of [`Walker::walk`]).
    forks: usize,
    /// Rule visits left of the evaluation's [`MAX_VISITS`].
    visits_left: usize,
}

#[derive(Clone, Copy, Debug)]
struct ChainFrame {
    chain: usize,
    next: usize,
}

impl Walker<'_> {
    fn decision(&self, chain: usize, by: Decider) -> Decision {
        let c = self.rs.chains.get(chain);
        Decision {
            source: c.map_or(RuleSource::Nft, |c| c.source),
            family: c.map_or(TableFamily::Other(String::new()), |c| c.family.clone()),
            table: c.map_or_else(String::new, |c| c.table.clone()),
            chain: c.map_or_else(String::new, |c| c.name.clone()),
            by,
        }
    }

    fn rule_decision(&self, chain: usize, rule: &Rule) -> Decision {
        self.decision(
            chain,
            Decider::Rule {
                pos: rule.pos.clone(),
                text: rule.text.clone(),
            },
        )
    }

    fn find_chain(&self, from: usize, name: &str) -> Option<usize> {
        let c = self.rs.chains.get(from)?;
        self.rs.chains.iter().position(|o| {
            o.source == c.source && o.family == c.family && o.table == c.table && o.name == name
        })
    }

    fn leaf(&mut self, verdict: PacketVerdict, by: Decision, assumed: &[(Decision, bool)]) {
        self.leaves.push(Leaf {
            verdict,
            by,
            assumed: assumed.to_vec(),
        });
    }

    /// The walk stops at one of its limits: an uncertain verdict, decided by the limit.
    fn too_many_forks(&mut self, base: usize, assumed: &[(Decision, bool)]) {
        let by = self.decision(
            base,
            Decider::Limit {
                reason: "too many undecided rules to follow".into(),
            },
        );
        self.leaf(PacketVerdict::Uncertain, by, assumed);
    }

    /// Follow the packet from `stack` to a verdict, forking on undecided matches.
    fn walk(
        &mut self,
        base: usize,
        mut stack: Vec<ChainFrame>,
        mut assumed: Vec<(Decision, bool)>,
    ) {
        loop {
            if self.leaves.len() >= MAX_LEAVES {
                self.too_many_forks(base, &assumed);
                return;
            }
            let Some(left) = self.visits_left.checked_sub(1) else {
                let by = self.decision(
                    base,
                    Decider::Limit {
                        reason: "ruleset too long to follow".into(),
                    },
                );
                self.leaf(PacketVerdict::Uncertain, by, &assumed);
                return;
            };
            self.visits_left = left;
            let Some(top) = stack.last_mut() else {
                // Returned out of the base chain: its policy applies.
                let policy = self
                    .rs
                    .chains
                    .get(base)
                    .and_then(|c| c.base.as_ref())
                    .map_or(Policy::Accept, |b| b.policy);
                let v = match policy {
                    Policy::Accept => PacketVerdict::Accept,
                    Policy::Drop => PacketVerdict::Drop,
                };
                let by = self.decision(base, Decider::Policy { policy });
                self.leaf(v, by, &assumed);
                return;
            };
            let frame = *top;
            let Some(rule) = self
                .rs
                .chains
                .get(frame.chain)
                .and_then(|c| c.rules.get(frame.next))
            else {
                // End of chain: implicit return.
                stack.pop();
                continue;
            };
            match match_rule(self.pkt, rule) {
                Tri::No => top.next += 1,
                // Whether or not it matched, a rule without a verdict changes nothing.
                Tri::Maybe if rule.action == RuleAction::Continue => top.next += 1,
                Tri::Yes => match self.apply(stack, &assumed, frame.chain, rule) {
                    Next::Done => return,
                    Next::Go(s) => stack = s,
                },
                Tri::Maybe => {
                    top.next += 1;
                    // Fork: first the walk where the rule matched, then the one where it did not.
                    let d = self.rule_decision(frame.chain, rule);
                    let mut a = assumed.clone();
                    a.push((d.clone(), true));
                    if self.forks >= MAX_FORK_DEPTH {
                        self.too_many_forks(base, &a);
                        return;
                    }
                    let mut s = stack.clone();
                    if let Some(t) = s.last_mut() {
                        t.next = frame.next;
                    }
                    if let Next::Go(s) = self.apply(s, &a, frame.chain, rule) {
                        self.forks += 1;
                        self.walk(base, s, a);
                        self.forks -= 1;
                    }
                    assumed.push((d, false));
                }
            }
        }
    }

    /// The rule at `stack.top().next` matched: record a verdict, or return where to go on.
    fn apply(
        &mut self,
        mut stack: Vec<ChainFrame>,
        assumed: &[(Decision, bool)],
        chain: usize,
        rule: &Rule,
    ) -> Next {
        // Step past the rule.
        if let Some(t) = stack.last_mut() {
            t.next += 1;
        }
        let verdict = match &rule.action {
            RuleAction::Accept => PacketVerdict::Accept,
            RuleAction::Drop => PacketVerdict::Drop,
            RuleAction::Reject => PacketVerdict::Reject,
            RuleAction::Unknown(_) => PacketVerdict::Uncertain,
            RuleAction::Continue => return Next::Go(stack),
            RuleAction::Return => {
                stack.pop();
                return Next::Go(stack);
            }
            RuleAction::Jump(target) | RuleAction::Goto(target) => {
                let reason = match self.find_chain(chain, target) {
                    None => format!("jump to missing chain {target}"),
                    Some(_) if stack.len() >= MAX_DEPTH => "jumps nested too deep (loop?)".into(),
                    Some(idx) => {
                        if matches!(rule.action, RuleAction::Goto(_)) {
                            stack.pop();
                        }
                        stack.push(ChainFrame {
                            chain: idx,
                            next: 0,
                        });
                        return Next::Go(stack);
                    }
                };
                let by = self.decision(chain, Decider::Limit { reason });
                self.leaf(PacketVerdict::Uncertain, by, assumed);
                return Next::Done;
            }
        };
        let here = self.rule_decision(chain, rule);
        self.leaf(verdict, here, assumed);
        Next::Done
    }
}

/// What to do after a matching rule.
#[derive(Debug)]
enum Next {
    /// A verdict was recorded.
    Done,
    /// Go on from this stack.
    Go(Vec<ChainFrame>),
}

fn hook_applies(c: &Chain, pkt: &Packet) -> Option<i32> {
    let b = c.base.as_ref()?;
    (b.hook == Hook::Input && c.family.sees(pkt.family)).then_some(b.priority)
}

/// Evaluate `pkt` through every input base chain of `rs`.
pub fn evaluate(rs: &Ruleset, pkt: &Packet) -> Evaluation {
    let mut bases: Vec<(i32, usize)> = rs
        .chains
        .iter()
        .enumerate()
        .filter_map(|(i, c)| hook_applies(c, pkt).map(|p| (p, i)))
        .collect();
    bases.sort_by_key(|&(p, _)| p);

    let mut steps = Vec::new();
    let mut uncertain_rules: Vec<Decision> = Vec::new();
    let mut first_block: Option<(PacketVerdict, Decision)> = None;
    let mut any_uncertain = false;
    let mut visits_left = MAX_VISITS;
    for (priority, idx) in bases {
        let mut w = Walker {
            rs,
            pkt,
            leaves: Vec::new(),
            forks: 0,
            visits_left,
        };
        w.walk(
            idx,
            vec![ChainFrame {
                chain: idx,
                next: 0,
            }],
            Vec::new(),
        );
        visits_left = w.visits_left;
        let leaves = w.leaves;
        let Some(first) = leaves.first() else {
            continue;
        };
        let agreed = leaves.iter().all(|l| l.verdict == first.verdict)
            && first.verdict != PacketVerdict::Uncertain;
        let verdict = if agreed {
            first.verdict
        } else {
            PacketVerdict::Uncertain
        };
        if !agreed {
            any_uncertain = true;
            for l in &leaves {
                for (d, _) in &l.assumed {
                    if !uncertain_rules.contains(d) {
                        uncertain_rules.push(d.clone());
                    }
                }
                if l.verdict == PacketVerdict::Uncertain && !uncertain_rules.contains(&l.by) {
                    uncertain_rules.push(l.by.clone());
                }
            }
        }
        // Report the walk that assumed the fewest undecided matches held.
        let shown = leaves
            .iter()
            .min_by_key(|l| l.assumed.iter().filter(|(_, m)| *m).count())
            .unwrap_or(first);
        if verdict.blocks() && first_block.is_none() {
            first_block = Some((verdict, shown.by.clone()));
        }
        let (table, base_chain, policy) = rs.chains.get(idx).map_or_else(
            || (String::new(), String::new(), Policy::Accept),
            |c| {
                (
                    c.table.clone(),
                    c.name.clone(),
                    c.base.as_ref().map_or(Policy::Accept, |b| b.policy),
                )
            },
        );
        steps.push(ChainStep {
            verdict,
            decided_by: shown.by.clone(),
            base_chain,
            table,
            priority,
            policy,
        });
    }

    let (verdict, deciding) = if let Some((v, d)) = first_block {
        // A certain drop anywhere wins, whatever the undecided chains do.
        (v, Some(d))
    } else if any_uncertain {
        let d = steps
            .iter()
            .find(|s| s.verdict == PacketVerdict::Uncertain)
            .map(|s| s.decided_by.clone());
        (PacketVerdict::Uncertain, d)
    } else {
        // Accepted by all: name the accept in the last chain whose policy would have dropped,
        // else the last accept by a rule, else the last step.
        let by_drop_policy_chain = steps
            .iter()
            .rev()
            .find(|s| s.policy == Policy::Drop && matches!(s.decided_by.by, Decider::Rule { .. }));
        let by_rule = steps
            .iter()
            .rev()
            .find(|s| matches!(s.decided_by.by, Decider::Rule { .. }));
        let d = by_drop_policy_chain
            .or(by_rule)
            .or(steps.last())
            .map(|s| s.decided_by.clone());
        (PacketVerdict::Accept, d)
    };
    if verdict != PacketVerdict::Uncertain {
        uncertain_rules.clear();
    }
    Evaluation {
        verdict,
        deciding,
        chains: steps,
        uncertain_rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostfw::iptables_save;

    fn tcp_on_wt0() -> Packet {
        Packet::within(
            Family::Ipv4,
            IfaceSpec::Named("wt0".into()),
            Cidr::parse("100.64.0.0/10").unwrap(),
            L4::Tcp {
                dport: PortRange::single(8080),
            },
        )
    }

    #[test]
    fn long_chains_and_loops_do_not_overflow_or_hang() {
        let mut text = String::from("*filter\n:INPUT DROP [0:0]\n:a - [0:0]\n:b - [0:0]\n");
        for _ in 0..20_000 {
            text.push_str("-A INPUT -m set --match-set x src -j LOG\n");
        }
        for _ in 0..100 {
            text.push_str("-A INPUT -m set --match-set x src -j a\n");
        }
        text.push_str("-A a -j b\n-A b -j a\nCOMMIT\n");
        let rs = iptables_save::parse(&text, Family::Ipv4).unwrap().ruleset;
        let e = evaluate(&rs, &tcp_on_wt0());
        assert_eq!(e.verdict, PacketVerdict::Uncertain);
        assert!(!e.uncertain_rules.is_empty());
    }

    /// A long chain that jumps back into itself at its end, undecided: each of the 256 walks
    /// the forks allow visits the chain's 10,000 rules again. The visit budget ends the
    /// evaluation (about 2.6 million visits without it), and says why.
    #[test]
    fn a_self_jumping_chain_ends_at_the_visit_budget() {
        let mut text = String::from("*filter\n:INPUT DROP [0:0]\n:a - [0:0]\n-A INPUT -j a\n");
        for _ in 0..10_000 {
            text.push_str("-A a -p udp -j ACCEPT\n");
        }
        text.push_str("-A a -m set --match-set x src -j a\n-A a -j a\nCOMMIT\n");
        let rs = iptables_save::parse(&text, Family::Ipv4).unwrap().ruleset;
        let e = evaluate(&rs, &tcp_on_wt0());
        assert_eq!(e.verdict, PacketVerdict::Uncertain);
        let budget = e.uncertain_rules.iter().any(|d| {
            matches!(&d.by, Decider::Limit { reason } if reason == "ruleset too long to follow")
        });
        assert!(budget, "{:#?}", e.uncertain_rules);
    }

    #[test]
    fn goto_return_and_policy() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:a - [0:0]\n:b - [0:0]\n\
            -A INPUT -j a\n-A INPUT -j DROP\n-A a -g b\n-A a -j ACCEPT\n-A b -j RETURN\nCOMMIT\n";
        let rs = iptables_save::parse(text, Family::Ipv4).unwrap().ruleset;
        // goto b, RETURN from b goes back to INPUT (not a), so the DROP decides.
        let e = evaluate(&rs, &tcp_on_wt0());
        assert_eq!(e.verdict, PacketVerdict::Drop);
        assert!(matches!(&e.deciding.unwrap().by, Decider::Rule { pos, .. } if pos.index == 2));
    }

    #[test]
    fn no_input_chain_accepts() {
        let e = evaluate(&Ruleset::default(), &tcp_on_wt0());
        assert_eq!(e.verdict, PacketVerdict::Accept);
        assert!(e.deciding.is_none());
    }
}
