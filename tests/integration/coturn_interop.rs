//! Interop with a real coturn (Debian package) on loopback: our client against coturn as a
//! STUN server, and coturn's own `turnutils_stunclient` against our `serve`.

use std::process::Command;

use crate::common::{coturn, free_port, have, json, serve, stunmap};

#[test]
fn our_client_against_coturn() {
    if !have("turnserver") {
        return;
    }
    let c = coturn(&[]);
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{}", c.port),
        "--count",
        "3",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = &json(&out)["targets"][0];
    assert_eq!(t["answered"], 3);
    assert!(t["software"].as_str().unwrap().starts_with("Coturn"), "{t}");
    assert!(t["mapped"][0].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(t["alg_suspected"], false);
}

#[test]
fn our_client_over_tcp_against_coturn() {
    if !have("turnserver") {
        return;
    }
    let c = coturn(&[]);
    let out = stunmap(&[
        "stun",
        "--tcp",
        &format!("127.0.0.1:{}", c.port),
        "--count",
        "1",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["targets"][0]["answered"], 1);
}

#[test]
fn coturn_client_against_our_serve() {
    if !have("turnutils_stunclient") {
        return;
    }
    let port = free_port("127.0.0.1");
    let _s = serve(&["--listen", &format!("127.0.0.1:{port}")]);
    let out = Command::new("timeout")
        .args([
            "10",
            "turnutils_stunclient",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UDP reflexive addr: 127.0.0.1:"), "{text}");
}
