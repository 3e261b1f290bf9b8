//! How long `probes::hostfw::diagnose` takes on large and hostile `nft list ruleset` texts, for
//! BENCHMARKS.md ("Host firewall evaluation"). Run with
//! `cargo run --release -p stunmap-engine --example hostfw_eval_scale`.
//!
//! Shapes: `flat` is a long input chain of rules that do not match (one walk visits each
//! once); `forks` is a long chain of undecided verdicts (each forks a walk); `self-jump` is a
//! long chain that ends in an undecided jump back into itself and an unconditional one (every
//! fork walks the chain again).

use probes::PortRange;
use probes::hostfw::{Cidr, Inputs, Options, diagnose, nft_text};

fn ruleset(shape: &str, rules: usize) -> String {
    let mut s = String::from(
        "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy drop;\n",
    );
    match shape {
        "flat" => {
            for _ in 0..rules {
                s.push_str("\t\ttcp dport 1 accept\n");
            }
            s.push_str("\t}\n}\n");
        }
        "forks" => {
            for _ in 0..rules {
                s.push_str("\t\tmeta mark 0x2 drop\n");
            }
            s.push_str("\t}\n}\n");
        }
        _ => {
            s.push_str("\t\tjump c\n\t}\n\tchain c {\n");
            for _ in 0..rules {
                s.push_str("\t\ttcp dport 1 accept\n");
            }
            s.push_str("\t\tmeta mark 0x1 jump c\n\t\tjump c\n\t}\n}\n");
        }
    }
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let subnet = Cidr::parse("100.64.0.0/10").ok_or("subnet")?;
    let options = Options {
        interface: "wt0".into(),
        subnet,
        service_port: 8080,
        wg_range: PortRange {
            start: 49152,
            end: 65535,
        },
        wg_port: 51820,
        uplink: None,
        flat_network: true,
    };
    println!("| shape | rules | bytes | parse | parse + diagnose |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for shape in ["flat", "forks", "self-jump"] {
        for rules in [1_000, 10_000, 100_000, 400_000] {
            let text = ruleset(shape, rules);
            let start = engine::clock::now();
            let rs = nft_text::parse(&text)?;
            let parsed = engine::clock::now() - start;
            let inputs = Inputs {
                nft: Some(rs),
                ..Inputs::default()
            };
            let report = diagnose(&inputs, &options);
            let total = engine::clock::now() - start;
            assert!(!report.findings.is_empty());
            println!(
                "| {shape} | {rules} | {} | {:.1} ms | {:.1} ms |",
                text.len(),
                parsed.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
