//! `nft -j list ruleset`: the libnftables JSON schema (`{"nftables": [{"table": …}, {"chain": …},
//! {"rule": …}, …]}`).
//!
//! Expressions this module models become [`Match`]es; anything else (named sets, `xt` matches
//! left by iptables-nft, meta keys not listed here) becomes [`Match::Unknown`] so the evaluator
//! reports the rule as undecided rather than skipping it. A verdict map (`vmap`) is expanded into
//! one alternative per element, all carrying the rule's own position and text.

use serde_json::Value;

use super::iptables_save::icmp_type;
use super::model::{
    BaseChain, Chain, Cidr, CtState, Hook, IfName, Match, Policy, Proto, Rule, RuleAction, RulePos,
    RuleSource, Ruleset, TableFamily, nft_priority,
};
use super::{HostFwError, InputFormat};
use crate::{Family, PortRange};

fn shape(path: &str, detail: impl Into<String>) -> HostFwError {
    HostFwError::Shape {
        format: InputFormat::NftJson,
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn family(s: &str) -> TableFamily {
    match s {
        "ip" => TableFamily::Ip,
        "ip6" => TableFamily::Ip6,
        "inet" => TableFamily::Inet,
        o => TableFamily::Other(o.to_owned()),
    }
}

/// Named priorities (nft(8), "CHAIN PRIORITY").
fn priority(v: &Value) -> Option<i32> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => {
            let s = s.replace(' ', "");
            // `nft -j` writes a bare number as a JSON number: a string that starts with a sign
            // is not a priority it writes.
            if s.starts_with(['+', '-']) {
                return None;
            }
            nft_priority(&s)
        }
        _ => None,
    }
}

fn str_field<'a>(obj: &'a Value, key: &str, path: &str) -> Result<&'a str, HostFwError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| shape(path, format!("missing string field {key:?}")))
}

/// Parse the JSON document.
pub fn parse(text: &str) -> Result<Ruleset, HostFwError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| HostFwError::json(InputFormat::NftJson, &e))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("(top)", "expected an object with an \"nftables\" array"))?;
    let mut chains: Vec<Chain> = Vec::new();
    let mut rules: Vec<(String, Value, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(c) = item.get("chain") {
            let path = format!("nftables[{i}].chain");
            let base = match c.get("hook").and_then(Value::as_str) {
                Some(h) => Some(BaseChain {
                    hook: Hook::from_nft(h),
                    priority: c
                        .get("prio")
                        .and_then(priority)
                        .ok_or_else(|| shape(&path, "base chain without a usable \"prio\""))?,
                    policy: match c.get("policy").and_then(Value::as_str) {
                        Some("drop") => Policy::Drop,
                        _ => Policy::Accept,
                    },
                }),
                None => None,
            };
            chains.push(Chain {
                source: RuleSource::Nft,
                family: family(str_field(c, "family", &path)?),
                table: str_field(c, "table", &path)?.to_owned(),
                name: str_field(c, "name", &path)?.to_owned(),
                base,
                rules: Vec::new(),
            });
        } else if let Some(r) = item.get("rule") {
            let path = format!("nftables[{i}].rule");
            rules.push((path, r.clone(), String::new()));
        }
    }
    for (path, r, _) in rules {
        let fam = family(str_field(&r, "family", &path)?);
        let table = str_field(&r, "table", &path)?;
        let cname = str_field(&r, "chain", &path)?;
        let Some(chain) = chains
            .iter_mut()
            .find(|c| c.family == fam && c.table == table && c.name == cname)
        else {
            return Err(shape(
                &path,
                format!("rule for unknown chain {fam} {table} {cname}"),
            ));
        };
        let handle = r.get("handle").and_then(Value::as_u64);
        let exprs = r
            .get("expr")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(&path, "rule without an \"expr\" array"))?;
        let index = chain.rules.last().map_or(0, |l: &Rule| l.pos.index) + 1;
        let mut text = exprs.iter().map(stmt_text).collect::<Vec<_>>().join(" ");
        if let Some(c) = r.get("comment").and_then(Value::as_str) {
            text.push_str(&format!(" comment \"{c}\""));
        }
        let pos = RulePos {
            index,
            line: None,
            handle,
        };
        for alt in rule_alternatives(exprs, &path)? {
            chain.rules.push(Rule {
                text: text.clone(),
                pos: pos.clone(),
                matches: alt.0,
                action: alt.1,
            });
        }
    }
    Ok(Ruleset { chains })
}

type Alt = (Vec<Match>, RuleAction);

/// The rule as one or more (matches, action) alternatives (more than one only for a vmap).
fn rule_alternatives(exprs: &[Value], path: &str) -> Result<Vec<Alt>, HostFwError> {
    let mut matches = Vec::new();
    let mut action = RuleAction::Continue;
    for (j, e) in exprs.iter().enumerate() {
        let epath = format!("{path}.expr[{j}]");
        let Some((key, body)) = e.as_object().and_then(|o| o.iter().next()) else {
            return Err(shape(&epath, "expected an object with one key"));
        };
        match key.as_str() {
            "match" => matches.extend(match_expr(body, &epath)?),
            "counter" | "log" | "comment" | "notrack" => {}
            "limit" => matches.push(Match::Limit),
            "accept" => action = RuleAction::Accept,
            "drop" => action = RuleAction::Drop,
            "reject" => action = RuleAction::Reject,
            "return" => action = RuleAction::Return,
            "continue" => action = RuleAction::Continue,
            "jump" | "goto" => {
                let t = str_field(body, "target", &epath)?.to_owned();
                action = if key == "jump" {
                    RuleAction::Jump(t)
                } else {
                    RuleAction::Goto(t)
                };
            }
            "xt" => {
                let name = body.get("name").and_then(Value::as_str).unwrap_or("?");
                if body.get("type").and_then(Value::as_str) == Some("target") {
                    action = if matches!(name, "LOG" | "NFLOG" | "MARK" | "CONNMARK" | "TRACE") {
                        RuleAction::Continue
                    } else {
                        RuleAction::Unknown(format!("xt target {name}"))
                    };
                } else {
                    matches.push(Match::Unknown {
                        what: format!("xt match {name}"),
                    });
                }
            }
            "vmap" => {
                let Some(elems) = body
                    .get("data")
                    .and_then(|d| d.get("set"))
                    .and_then(Value::as_array)
                else {
                    action = RuleAction::Unknown(stmt_text(e));
                    continue;
                };
                let key = body.get("key").unwrap_or(&Value::Null);
                let mut alts = Vec::new();
                for el in elems {
                    let (Some(k), Some(v)) = (el.get(0), el.get(1)) else {
                        return Err(shape(&epath, "vmap element is not a [key, verdict] pair"));
                    };
                    let m = match_from(key, "==", k, &epath)?;
                    let sub = rule_alternatives(std::slice::from_ref(v), &epath)?;
                    for (sm, sa) in sub {
                        let mut all = matches.clone();
                        all.extend(m.clone());
                        all.extend(sm);
                        alts.push((all, sa));
                    }
                }
                return Ok(alts);
            }
            "queue" => action = RuleAction::Unknown("queue".into()),
            _ => matches.push(Match::Unknown { what: stmt_text(e) }),
        }
    }
    Ok(vec![(matches, action)])
}

fn match_expr(body: &Value, path: &str) -> Result<Vec<Match>, HostFwError> {
    let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
    let (Some(left), Some(right)) = (body.get("left"), body.get("right")) else {
        return Err(shape(path, "match without left/right"));
    };
    match_from(left, op, right, path)
}

/// Flatten a right-hand side into its elements (a set, a flag array, or one value).
fn elements(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.contains_key("set") => o
            .get("set")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        other => vec![other],
    }
}

fn unknown(left: &Value, op: &str, right: &Value) -> Vec<Match> {
    vec![Match::Unknown {
        what: match_text(left, op, right),
    }]
}

fn match_from(
    left: &Value,
    op: &str,
    right: &Value,
    path: &str,
) -> Result<Vec<Match>, HostFwError> {
    let negated = op == "!=";
    if !matches!(op, "==" | "!=" | "in") || right.as_str().is_some_and(|s| s.starts_with('@')) {
        return Ok(unknown(left, op, right));
    }
    let elems = elements(right);
    if let Some(key) = left
        .get("meta")
        .and_then(|m| m.get("key"))
        .and_then(Value::as_str)
    {
        return Ok(match key {
            "iifname" | "iif" | "oifname" | "oif" => {
                let mut out = Vec::new();
                for e in &elems {
                    let Some(s) = e.as_str() else {
                        return Ok(unknown(left, op, right));
                    };
                    let name = match s.strip_suffix('*') {
                        Some(p) if !p.ends_with('\\') => IfName {
                            name: p.to_owned(),
                            prefix: true,
                        },
                        _ => IfName {
                            name: s.replace("\\*", "*"),
                            prefix: false,
                        },
                    };
                    out.push(name);
                }
                // A set of names is a disjunction; only a single name is modelled exactly.
                match (out.pop(), out.is_empty()) {
                    (Some(name), true) if key.starts_with('i') => {
                        vec![Match::InIface { name, negated }]
                    }
                    (Some(name), true) => vec![Match::OutIface { name, negated }],
                    _ if key.starts_with('o') => vec![Match::OutIface {
                        name: IfName {
                            name: String::new(),
                            prefix: true,
                        },
                        negated,
                    }],
                    _ => unknown(left, op, right),
                }
            }
            "l4proto" => protocol(&elems, negated).unwrap_or_else(|| unknown(left, op, right)),
            "nfproto" => match right.as_str() {
                Some("ipv4") if !negated => vec![Match::Family {
                    family: Family::Ipv4,
                }],
                Some("ipv6") if !negated => vec![Match::Family {
                    family: Family::Ipv6,
                }],
                Some("ipv4") => vec![Match::Family {
                    family: Family::Ipv6,
                }],
                Some("ipv6") => vec![Match::Family {
                    family: Family::Ipv4,
                }],
                _ => unknown(left, op, right),
            },
            "pkttype" => {
                let kinds = elems
                    .iter()
                    .filter_map(|e| e.as_str())
                    .map(|s| match s {
                        "host" => "UNICAST".to_owned(),
                        o => o.to_ascii_uppercase(),
                    })
                    .collect();
                vec![Match::AddrType {
                    dst: true,
                    kinds,
                    negated,
                }]
            }
            _ => unknown(left, op, right),
        });
    }
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        let field = p.get("field").and_then(Value::as_str).unwrap_or("");
        return Ok(match (proto, field) {
            ("ip" | "ip6", "saddr" | "daddr") => {
                let mut nets = Vec::new();
                for e in &elems {
                    match cidr_value(e) {
                        Some(c) => nets.push(c),
                        None => return Ok(unknown(left, op, right)),
                    }
                }
                let family = if proto == "ip" {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                let m = if field == "saddr" {
                    Match::Saddr { nets, negated }
                } else {
                    Match::Daddr { nets, negated }
                };
                vec![Match::Family { family }, m]
            }
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                let family = if proto == "ip" {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                let mut v = vec![Match::Family { family }];
                match protocol(&elems, negated) {
                    Some(m) => v.extend(m),
                    None => return Ok(unknown(left, op, right)),
                }
                v
            }
            ("tcp" | "udp" | "th", "dport" | "sport") => {
                let mut ranges = Vec::new();
                for e in &elems {
                    match port_value(e) {
                        Some(r) => ranges.push(r),
                        None => return Ok(unknown(left, op, right)),
                    }
                }
                let proto = match proto {
                    "tcp" => Some(Proto::Tcp),
                    "udp" => Some(Proto::Udp),
                    _ => None,
                };
                if field == "dport" {
                    vec![Match::Dport {
                        proto,
                        ranges,
                        negated,
                    }]
                } else {
                    vec![Match::Sport {
                        proto,
                        ranges,
                        negated,
                    }]
                }
            }
            ("icmp" | "icmpv6", "type") => {
                let v6 = proto == "icmpv6";
                let mut types = Vec::new();
                for e in &elems {
                    let t = match e {
                        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
                        Value::String(s) => icmp_type(s, v6),
                        _ => None,
                    };
                    match t {
                        Some(t) => types.push(t),
                        None => return Ok(unknown(left, op, right)),
                    }
                }
                vec![Match::IcmpType { v6, types, negated }]
            }
            _ => unknown(left, op, right),
        });
    }
    if left
        .get("ct")
        .and_then(|c| c.get("key"))
        .and_then(Value::as_str)
        == Some("state")
    {
        let mut states = Vec::new();
        for e in &elems {
            match e.as_str().and_then(CtState::parse) {
                Some(s) => states.push(s),
                None => return Ok(unknown(left, op, right)),
            }
        }
        return Ok(vec![Match::CtState { states, negated }]);
    }
    if let Some(f) = left.get("fib") {
        let flags: Vec<&str> = f
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if f.get("result").and_then(Value::as_str) == Some("type")
            && flags.first() == Some(&"daddr")
        {
            let kinds = elems
                .iter()
                .filter_map(|e| e.as_str())
                .map(str::to_ascii_uppercase)
                .collect();
            return Ok(vec![Match::AddrType {
                dst: true,
                kinds,
                negated,
            }]);
        }
    }
    let _ = path;
    Ok(unknown(left, op, right))
}

fn protocol(elems: &[&Value], negated: bool) -> Option<Vec<Match>> {
    let mut protos = Vec::new();
    for e in elems {
        let p = match e {
            Value::String(s) => Proto::parse(s)?,
            Value::Number(n) => Proto::parse(&n.to_string())?,
            _ => return None,
        };
        protos.push(p);
    }
    Some(vec![Match::Protocol { protos, negated }])
}

fn cidr_value(v: &Value) -> Option<Cidr> {
    match v {
        Value::String(s) => Cidr::parse(s),
        Value::Object(o) => {
            let p = o.get("prefix")?;
            let addr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            Cidr::new(addr, len)
        }
        _ => None,
    }
}

fn port_value(v: &Value) -> Option<PortRange> {
    let num = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    match v {
        Value::Number(_) => num(v).map(PortRange::single),
        Value::Object(o) => {
            let r = o.get("range")?.as_array()?;
            let (lo, hi) = (num(r.first()?)?, num(r.get(1)?)?);
            (lo <= hi).then_some(PortRange { start: lo, end: hi })
        }
        _ => None,
    }
}

/// [`value_text`] of `o`'s `key`, empty when it has none.
fn key_text(o: &Value, key: &str, quote: bool) -> String {
    o.get(key).map(|v| value_text(v, quote)).unwrap_or_default()
}

/// Render an expression roughly as `nft list ruleset` prints it.
fn value_text(v: &Value, quote: bool) -> String {
    match v {
        Value::String(s) if quote => format!("\"{s}\""),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a
            .iter()
            .map(|x| value_text(x, quote))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(o) => {
            if let Some(s) = o.get("set").and_then(Value::as_array) {
                let inner: Vec<String> = s
                    .iter()
                    .map(|x| match x.as_array() {
                        Some(pair) if pair.len() == 2 => pair
                            .iter()
                            .map(|p| value_text(p, quote))
                            .collect::<Vec<_>>()
                            .join(" : "),
                        _ => value_text(x, quote),
                    })
                    .collect();
                return format!("{{ {} }}", inner.join(", "));
            }
            if let Some(p) = o.get("prefix") {
                return format!(
                    "{}/{}",
                    key_text(p, "addr", false),
                    key_text(p, "len", false)
                );
            }
            if let Some(Value::Array(r)) = o.get("range") {
                return r
                    .iter()
                    .map(|x| value_text(x, false))
                    .collect::<Vec<_>>()
                    .join("-");
            }
            if let Some(m) = o.get("meta") {
                let k = m.get("key").and_then(Value::as_str).unwrap_or("?");
                return match k {
                    "iifname" | "oifname" | "iif" | "oif" | "mark" => k.to_owned(),
                    _ => format!("meta {k}"),
                };
            }
            if let Some(p) = o.get("payload") {
                return format!(
                    "{} {}",
                    p.get("protocol").and_then(Value::as_str).unwrap_or("?"),
                    p.get("field").and_then(Value::as_str).unwrap_or("?")
                );
            }
            if let Some(c) = o.get("ct") {
                return format!("ct {}", c.get("key").and_then(Value::as_str).unwrap_or("?"));
            }
            if let Some((k, _)) = o.iter().next() {
                if o.len() == 1 && o.get(k).is_some_and(Value::is_null) {
                    return k.clone();
                }
                if let Some(t) = o
                    .get(k)
                    .and_then(|b| b.get("target"))
                    .and_then(Value::as_str)
                {
                    return format!("{k} {t}");
                }
            }
            serde_json::to_string(v).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn match_text(left: &Value, op: &str, right: &Value) -> String {
    let l = value_text(left, false);
    let quote = l.ends_with("ifname") || l == "iif" || l == "oif";
    let op = match op {
        "==" | "in" => String::new(),
        o => format!("{o} "),
    };
    format!("{l} {op}{}", value_text(right, quote))
}

fn stmt_text(e: &Value) -> String {
    let Some((k, body)) = e.as_object().and_then(|o| o.iter().next()) else {
        return e.to_string();
    };
    match k.as_str() {
        "match" => match_text(
            body.get("left").unwrap_or(&Value::Null),
            body.get("op").and_then(Value::as_str).unwrap_or("=="),
            body.get("right").unwrap_or(&Value::Null),
        ),
        "counter" => "counter".into(),
        "log" => match body.get("prefix").and_then(Value::as_str) {
            Some(p) => format!("log prefix \"{p}\""),
            None => "log".into(),
        },
        "limit" => format!(
            "limit rate {}/{}",
            key_text(body, "rate", false),
            body.get("per").and_then(Value::as_str).unwrap_or("second")
        ),
        "jump" | "goto" => format!(
            "{k} {}",
            body.get("target").and_then(Value::as_str).unwrap_or("?")
        ),
        "vmap" => format!(
            "{} vmap {}",
            key_text(body, "key", false),
            key_text(body, "data", true)
        ),
        "xt" => format!(
            "xt {} {}",
            body.get("type").and_then(Value::as_str).unwrap_or("?"),
            body.get("name").and_then(Value::as_str).unwrap_or("?")
        ),
        _ if body.is_null() => k.clone(),
        _ => format!("{k} {}", value_text(body, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_priorities() {
        assert_eq!(priority(&Value::from("filter - 1")), Some(-1));
        assert_eq!(priority(&Value::from("mangle+10")), Some(-140));
        assert_eq!(priority(&Value::from(-150)), Some(-150));
        assert_eq!(priority(&Value::from("bogus")), None);
    }

    #[test]
    fn vmap_expands_and_sets_render() {
        let doc = r#"{"nftables":[
          {"chain":{"family":"inet","table":"t","name":"in","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
          {"chain":{"family":"inet","table":"t","name":"trusted","handle":2}},
          {"rule":{"family":"inet","table":"t","chain":"in","handle":3,"expr":[
            {"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"wt*"}},
            {"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"wt0"}},
            {"vmap":{"key":{"meta":{"key":"iifname"}},"data":{"set":[["wt0",{"goto":{"target":"trusted"}}],["eth0",{"drop":null}]]}}}]}},
          {"rule":{"family":"inet","table":"t","chain":"in","handle":4,"expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[22,{"range":[1000,2000]}]}}},
            {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@allowed"}},
            {"accept":null}]}}]}"#;
        let rs = parse(doc).unwrap();
        let c = &rs.chains[0];
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[0].action, RuleAction::Goto("trusted".into()));
        assert_eq!(c.rules[1].action, RuleAction::Drop);
        assert_eq!(c.rules[0].pos.handle, Some(3));
        assert_eq!(
            c.rules[0].matches[0],
            Match::InIface {
                name: IfName {
                    name: "wt".into(),
                    prefix: true
                },
                negated: false
            }
        );
        assert_eq!(
            c.rules[0].text,
            "iifname \"wt*\" iifname \"wt0\" iifname vmap { \"wt0\" : goto trusted, \"eth0\" : drop }"
        );
        assert_eq!(
            c.rules[2].text,
            "tcp dport { 22, 1000-2000 } ip saddr @allowed accept"
        );
        assert!(
            matches!(&c.rules[2].matches[1], Match::Unknown { what } if what == "ip saddr @allowed")
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        let e = parse("{\"nftables\": [\n{\"chain\": }]}").unwrap_err();
        assert!(matches!(e, HostFwError::Json { line: 2, .. }), "{e}");
        assert!(parse("{}").is_err());
        let e =
            parse(r#"{"nftables":[{"rule":{"family":"ip","table":"x","chain":"y","expr":[]}}]}"#)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nft JSON ruleset: nftables[0].rule: rule for unknown chain ip x y"
        );
    }
}
