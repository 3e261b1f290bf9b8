//! What ships in contrib/ against what the binary really exports: the Prometheus alerting rules
//! (promtool's own tests, their input series against the label sets of a real
//! `stunmap demo --prom`, and no alert from the healthy demo), and the Grafana dashboard (every
//! metric and label it queries is exported; every query parses).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{free_port, have, serve, stunmap};
use crate::prometheus::http_get;

/// Labels every scraped series gets from Prometheus, not from stunmap.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel)
}

/// One sample line of a text exposition: name, labels (name → raw value), value.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    /// The `{…}` part exactly as written (escapes kept), for promtool's series notation.
    selector: String,
    value: String,
}

/// Parse `name{a="x",b="y\"z"} value` (or `name value`).
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?.to_string();
    let rest = line.get(name_end..)?;
    let (labels, selector, tail) = if rest.starts_with('{') {
        let mut labels = BTreeMap::new();
        let b = rest.as_bytes();
        let mut i = 1;
        loop {
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let eq = i + rest.get(i..)?.find('=')?;
            let key = rest.get(i..eq)?.to_string();
            if b.get(eq + 1) != Some(&b'"') {
                return None;
            }
            let mut j = eq + 2;
            let mut value = String::new();
            loop {
                match b.get(j)? {
                    b'\\' => {
                        value.push(*b.get(j + 1)? as char);
                        j += 2;
                    }
                    b'"' => break,
                    _ => {
                        let c = rest.get(j..)?.chars().next()?;
                        value.push(c);
                        j += c.len_utf8();
                    }
                }
            }
            labels.insert(key, value);
            i = j + 1;
            if b.get(i) == Some(&b',') {
                i += 1;
            }
        }
        (labels, rest.get(..i)?.to_string(), rest.get(i..)?)
    } else {
        (BTreeMap::new(), String::new(), rest)
    };
    Some(Sample {
        name,
        labels,
        selector,
        value: tail.trim().to_string(),
    })
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
        .collect()
}

/// `stunmap demo --prom` once for the whole test binary (coturn, when installed, adds the
/// relay metrics).
fn demo() -> &'static [Sample] {
    static DEMO: OnceLock<Vec<Sample>> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let prom = dir.path().join("demo.prom");
        let out = stunmap(&["demo", "--quiet", "--prom", prom.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_exposition(&std::fs::read_to_string(&prom).unwrap())
    })
}

/// `stunmap serve --listen … --metrics …` and its /metrics (the probe server's own counters).
fn serve_metrics() -> Vec<Sample> {
    let stun = free_port("127.0.0.1");
    let http = free_port("127.0.0.1");
    let _s = serve(&[
        "--listen",
        &format!("127.0.0.1:{stun}"),
        "--metrics",
        &format!("127.0.0.1:{http}"),
    ]);
    let body = http_get(http, "/metrics").expect("GET /metrics");
    parse_exposition(&body)
}

/// Metric name → every label-name set it is exported with.
fn label_sets(samples: &[Sample]) -> BTreeMap<String, BTreeSet<BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for s in samples {
        out.entry(s.name.clone())
            .or_default()
            .insert(s.labels.keys().cloned().collect());
    }
    out
}

/// Metric name → label name → every value seen.
fn label_values(samples: &[Sample]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in samples {
        for (k, v) in &s.labels {
            out.entry((s.name.clone(), k.clone()))
                .or_default()
                .insert(v.clone());
        }
    }
    out
}

/// Every `stunmap_…` name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("stunmap_") {
        let tail = rest.get(i..).unwrap();
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail.get(..end).unwrap().to_string());
        rest = tail.get(end..).unwrap();
    }
    out
}

/// Label names a PromQL expression refers to: matcher keys inside `{…}` and the lists of
/// `by (…)`, `without (…)`, `on (…)`, `ignoring (…)`.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let close = open + rest.get(open..).unwrap().find('}').unwrap();
        let inner = rest.get(open + 1..close).unwrap();
        // Split at commas outside quotes.
        let mut in_quotes = false;
        let mut start = 0;
        let b = inner.as_bytes();
        for (i, c) in inner.char_indices() {
            match c {
                '"' if i == 0 || b.get(i - 1) != Some(&b'\\') => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    out.insert(matcher_key(inner.get(start..i).unwrap()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.insert(matcher_key(inner.get(start..).unwrap()));
        rest = rest.get(close + 1..).unwrap();
    }
    for kw in ["by", "without", "on", "ignoring"] {
        let mut rest = expr;
        while let Some(i) = rest.find(&format!("{kw} (")) {
            let at_word = i == 0
                || !rest
                    .as_bytes()
                    .get(i - 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
            let tail = rest.get(i + kw.len() + 2..).unwrap();
            let close = tail.find(')').unwrap();
            if at_word {
                for l in tail.get(..close).unwrap().split(',') {
                    out.insert(l.trim().to_string());
                }
            }
            rest = tail.get(close..).unwrap();
        }
    }
    out.remove("");
    out
}

fn matcher_key(m: &str) -> String {
    m.split(['=', '!']).next().unwrap_or("").trim().to_string()
}

/// `{{label}}` references of a Grafana legend or an alert template.
fn legend_labels(legend: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = legend;
    while let Some(i) = rest.find("{{") {
        let tail = rest.get(i + 2..).unwrap();
        let end = tail.find("}}").unwrap();
        out.insert(tail.get(..end).unwrap().trim().to_string());
        rest = tail.get(end + 2..).unwrap();
    }
    out
}

/// The `expr:` values of the rules file (single-line or `>-` folded).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(v) = t.strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - t.len();
        let v = v.trim();
        if v == ">-" {
            let mut parts = Vec::new();
            while let Some(next) = lines.peek() {
                let nt = next.trim_start();
                if next.len() - nt.len() <= indent || nt.is_empty() {
                    break;
                }
                parts.push(nt.to_string());
                lines.next();
            }
            out.push(parts.join(" "));
        } else {
            out.push(v.to_string());
        }
    }
    out
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtools_checks_and_tests() {
    if !have("promtool") {
        return;
    }
    let dir = contrib("prometheus");
    let text = promtool(&["check", "rules", "stunmap-rules.yml"], &dir);
    assert!(text.contains("SUCCESS: 9 rules found"), "{text}");
    let text = promtool(&["test", "rules", "stunmap-rules.test.yml"], &dir);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn alert_rule_tests_use_the_exported_label_sets() {
    if !have("turnserver") {
        return;
    }
    let sets = label_sets(demo());
    let values = label_values(demo());
    let tests = std::fs::read_to_string(contrib("prometheus/stunmap-rules.test.yml")).unwrap();
    let mut seen = BTreeSet::new();
    for line in tests.lines() {
        let Some(series) = line.trim().strip_prefix("- series: '") else {
            continue;
        };
        let series = series.strip_suffix('\'').unwrap();
        let s = parse_sample(&format!("{series} 0")).unwrap();
        let mut names: BTreeSet<String> = s.labels.keys().cloned().collect();
        for l in SCRAPE_LABELS {
            assert!(names.remove(l), "{series}: no {l} label");
        }
        let exported = sets
            .get(&s.name)
            .unwrap_or_else(|| panic!("{} is not exported by stunmap demo --prom", s.name));
        assert!(
            exported.contains(&names),
            "{series}: labels {names:?}, exported with {exported:?}"
        );
        // Labels stunmap writes one series per value of (every status, level and state, 1
        // for the current one) take only those values.
        for l in ["status", "level", "state"] {
            if let (Some(v), Some(all)) = (s.labels.get(l), values.get(&(s.name.clone(), l.into())))
            {
                assert!(all.contains(v), "{series}: {l}={v:?} not among {all:?}");
            }
        }
        seen.insert(s.name);
    }
    // Every metric an alert reads has test series.
    let rules = std::fs::read_to_string(contrib("prometheus/stunmap-rules.yml")).unwrap();
    for e in rule_exprs(&rules) {
        for m in metric_names(&e) {
            assert!(seen.contains(&m), "no test series for {m} (in {e})");
        }
    }
}

#[test]
fn alert_rules_read_exported_metrics_and_labels() {
    if !have("turnserver") {
        return;
    }
    let sets = label_sets(demo());
    let rules = std::fs::read_to_string(contrib("prometheus/stunmap-rules.yml")).unwrap();
    let exprs = rule_exprs(&rules);
    assert_eq!(exprs.len(), 9);
    for e in &exprs {
        let metrics = metric_names(e);
        assert!(!metrics.is_empty(), "{e}");
        let mut known: BTreeSet<String> = SCRAPE_LABELS.iter().map(|s| s.to_string()).collect();
        for m in &metrics {
            let s = sets
                .get(m)
                .unwrap_or_else(|| panic!("{m} (in {e}) is not exported"));
            known.extend(s.iter().flatten().cloned());
        }
        for l in label_names(e) {
            assert!(known.contains(&l), "{e}: label {l} is not exported");
        }
    }
    // Annotation templates name exported labels only.
    for line in rules.lines() {
        for l in legend_labels(line) {
            if let Some(label) = l.strip_prefix("$labels.") {
                assert!(
                    sets.values().flatten().flatten().any(|x| x == label)
                        || SCRAPE_LABELS.contains(&label),
                    "{line}: {label}"
                );
            }
        }
    }
}

#[test]
fn the_healthy_demo_fires_no_alert() {
    if !have("turnserver") || !have("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        contrib("prometheus/stunmap-rules.yml"),
        dir.path().join("stunmap-rules.yml"),
    )
    .unwrap();
    let mut t = String::from(
        "rule_files:\n  - stunmap-rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for s in demo() {
        let sel = s.selector.trim_start_matches('{').trim_end_matches('}');
        let labels = if sel.is_empty() {
            "instance=\"demo:9100\",job=\"node\"".to_string()
        } else {
            format!("instance=\"demo:9100\",job=\"node\",{sel}")
        };
        // The timer keeps the result fresh: a new start time every minute.
        let values = if s.name == "stunmap_check_timestamp_seconds" {
            "0+60x60".to_string()
        } else {
            format!("{}x60", s.value)
        };
        let series = format!("{}{{{labels}}}", s.name).replace('\'', "''");
        t.push_str(&format!(
            "      - series: '{series}'\n        values: '{values}'\n"
        ));
    }
    t.push_str("    alert_rule_test:\n");
    let rules = std::fs::read_to_string(contrib("prometheus/stunmap-rules.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 9);
    for a in alerts {
        t.push_str(&format!(
            "      - eval_time: 50m\n        alertname: {a}\n        exp_alerts: []\n"
        ));
    }
    std::fs::write(dir.path().join("demo.test.yml"), &t).unwrap();
    promtool(&["test", "rules", "demo.test.yml"], dir.path());
}

/// Every query of the dashboard: (expr, legend) from each panel (and the panels of rows) and
/// the template variables' label_values queries.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    t["expr"].as_str().unwrap().to_string(),
                    t["legendFormat"].as_str().unwrap_or("").to_string(),
                ));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            out.push((v["definition"].as_str().unwrap().to_string(), String::new()));
        }
    }
    out
}

#[test]
fn the_dashboard_queries_only_exported_metrics_and_labels() {
    if !have("turnserver") {
        return;
    }
    let mut samples = demo().to_vec();
    samples.extend(serve_metrics());
    let sets = label_sets(&samples);
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana/stunmap.json")).unwrap())
            .unwrap();
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut used = BTreeSet::new();
    for (expr, legend) in &queries {
        let metrics = metric_names(expr);
        assert!(!metrics.is_empty(), "{expr}");
        let mut known: BTreeSet<String> = SCRAPE_LABELS.iter().map(|s| s.to_string()).collect();
        for m in &metrics {
            let s = sets.get(m).unwrap_or_else(|| {
                panic!("the dashboard queries {m}, which stunmap does not export")
            });
            known.extend(s.iter().flatten().cloned());
            used.insert(m.clone());
        }
        for l in label_names(expr).into_iter().chain(legend_labels(legend)) {
            assert!(
                known.contains(&l),
                "{expr} / {legend:?}: label {l} is not exported"
            );
        }
    }
    // The panels that make the dashboard worth having are there.
    for m in [
        "stunmap_check_status",
        "stunmap_check_level",
        "stunmap_probe_success",
        "stunmap_probe_rtt_seconds",
        "stunmap_nat_info",
        "stunmap_relay_rtt_median_seconds",
        "stunmap_tcp_sample_ports",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
    // Panel ids are unique (Grafana keys panels by id).
    let mut ids = BTreeSet::new();
    fn ids_of(p: &serde_json::Value, ids: &mut BTreeSet<i64>) {
        for p in p.as_array().into_iter().flatten() {
            assert!(
                ids.insert(p["id"].as_i64().unwrap()),
                "duplicate id {}",
                p["id"]
            );
            ids_of(&p["panels"], ids);
        }
    }
    ids_of(&d["panels"], &mut ids);
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    if !have("promtool") {
        return;
    }
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana/stunmap.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each query becomes a recording rule, which promtool parses; Grafana's variables are
    // replaced by what Grafana would put there.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (expr, _)) in dashboard_queries(&d).iter().enumerate() {
        if expr.starts_with("label_values(") {
            continue;
        }
        let e = expr
            .replace("$instance", ".*")
            .replace("$profile", ".*")
            .replace("$__rate_interval", "5m");
        assert!(!e.contains('$'), "unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.yml"], dir.path());
}

#[test]
fn the_exposition_parser_reads_escapes_and_bare_samples() {
    let s = parse_sample(r#"m{a="x\"y",b="P2P (STUN)",c=""} 0.5"#).unwrap();
    assert_eq!(s.name, "m");
    assert_eq!(s.labels["a"], "x\"y");
    assert_eq!(s.labels["b"], "P2P (STUN)");
    assert_eq!(s.labels["c"], "");
    assert_eq!(s.selector, r#"{a="x\"y",b="P2P (STUN)",c=""}"#);
    assert_eq!(s.value, "0.5");
    let s = parse_sample("m 1").unwrap();
    assert!(s.labels.is_empty());
    assert_eq!(s.value, "1");
    assert_eq!(
        label_names(r#"sum without (state) (m{a=~"x,y",b!="z"}) and on (c, d) n"#),
        ["a", "b", "c", "d", "state"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        metric_names("time() - stunmap_a_b{x=\"1\"} / stunmap_c"),
        ["stunmap_a_b", "stunmap_c"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
