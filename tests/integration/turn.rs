//! TURN against a real coturn on loopback: Allocate over UDP, TCP and TLS with static and
//! TURN REST credentials, the 401 of a wrong password, the server found without credentials,
//! and — after every run — no allocation left on the server.

use crate::common::{TurnAuth, coturn_lab, have, json, stunmap_env};

const PW: &[(&str, &str)] = &[("STUNMAP_TURN_PASSWORD", "secret")];

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn no_secret_in(out: &std::process::Output, secret: &str) {
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(out);
    assert!(
        !all.contains(secret),
        "a secret leaked into the output:\n{all}"
    );
}

#[test]
fn allocate_over_udp_tcp_and_tls_with_static_credentials() {
    if !have("turnserver") || !have("openssl") {
        return;
    }
    let lab = coturn_lab(TurnAuth::Static, true);
    let tls_port = lab.tls_port.unwrap();
    let cert = lab.cert();
    for uri in [
        format!("turn:127.0.0.1:{}", lab.port),
        format!("turn:127.0.0.1:{}?transport=tcp", lab.port),
        format!("turns:127.0.0.1:{tls_port}"),
    ] {
        let out = stunmap_env(
            &["turn", &uri, "--user", "test", "--ca-file", &cert, "--json"],
            PW,
        );
        assert_eq!(out.status.code(), Some(0), "{uri}: {}", stderr(&out));
        no_secret_in(&out, "secret\"");
        let j = json(&out);
        let r = &j["result"];
        assert_eq!(r["status"]["kind"], "allocated", "{uri}: {j}");
        assert!(
            r["relayed"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{j}"
        );
        assert!(
            r["mapped"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{j}"
        );
        assert_eq!(r["lifetime"], 600);
        assert!(r["software"].as_str().unwrap().starts_with("Coturn"), "{j}");
        assert_eq!(r["integrity"], "sha1");
        assert_eq!(r["permission"]["kind"], "ok", "{j}");
        assert_eq!(r["channel_bind"]["kind"], "ok", "{j}");
        assert_eq!(r["release"]["kind"], "released", "{j}");
    }
    assert_eq!(lab.allocations_made(), 3);
    lab.assert_no_allocations_left();
}

#[test]
fn without_credentials_the_server_is_found_and_a_wrong_password_is_401() {
    if !have("turnserver") {
        return;
    }
    let lab = coturn_lab(TurnAuth::Static, false);
    let uri = format!("turn:127.0.0.1:{}", lab.port);
    let out = stunmap_env(&["turn", &uri, "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["result"]["status"]["kind"], "auth-required", "{j}");
    assert_eq!(j["result"]["realm"], "lab");
    assert!(
        j["result"]["software"]
            .as_str()
            .unwrap()
            .starts_with("Coturn")
    );

    for uri in [uri.clone(), format!("{uri}?transport=tcp")] {
        let out = stunmap_env(
            &["turn", &uri, "--user", "test", "--json"],
            &[("STUNMAP_TURN_PASSWORD", "not-the-password")],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        no_secret_in(&out, "not-the-password");
        let j = json(&out);
        assert_eq!(j["result"]["status"]["kind"], "rejected", "{j}");
        assert_eq!(j["result"]["status"]["code"], 401, "{j}");
        assert_eq!(j["result"]["release"]["kind"], "not-needed");
    }
    assert_eq!(lab.allocations_made(), 0);
}

#[test]
fn rest_credentials_from_env_and_file() {
    if !have("turnserver") {
        return;
    }
    let secret = "s3cr3t-shared";
    let lab = coturn_lab(TurnAuth::RestSecret(secret), false);
    let uri = format!("turn:127.0.0.1:{}", lab.port);
    let out = stunmap_env(
        &["turn", &uri, "--user", "alice", "--json"],
        &[("STUNMAP_TURN_SECRET", secret)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    no_secret_in(&out, secret);
    assert_eq!(json(&out)["result"]["status"]["kind"], "allocated");

    let file = lab.dir.join("secret.txt");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let out = stunmap_env(
        &[
            "turn",
            &format!("{uri}?transport=tcp"),
            "--user",
            "alice",
            "--secret-file",
            file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["result"]["release"]["kind"], "released");

    let out = stunmap_env(
        &["turn", &uri, "--user", "alice", "--json"],
        &[("STUNMAP_TURN_SECRET", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["result"]["status"]["code"], 401);
    assert_eq!(lab.allocations_made(), 2);
    lab.assert_no_allocations_left();
}

#[test]
fn usage_errors() {
    for (args, env) in [
        (vec!["turn", "turn://127.0.0.1:3478"], vec![]),
        (vec!["turn", "stun:127.0.0.1"], vec![]),
        (vec!["turn", "turns:127.0.0.1?transport=udp"], vec![]),
        (vec!["turn", "turn:127.0.0.1", "--user", "x"], vec![]),
        (
            vec!["turn", "turn:127.0.0.1", "--user", "x"],
            vec![("STUNMAP_TURN_PASSWORD", "a"), ("STUNMAP_TURN_SECRET", "b")],
        ),
        (vec!["turn", "turn:127.0.0.1", "--password", "x"], vec![]),
    ] {
        let out = stunmap_env(&args, &env);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
}
