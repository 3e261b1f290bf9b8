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
        crate::common::validate("turn-v1.json", &j);
        assert_eq!(j["status"], "ok", "{j}");
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
    crate::common::validate("turn-v1.json", &j);
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
        crate::common::validate("turn-v1.json", &j);
        assert_eq!(j["status"], "degraded", "{j}");
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
        // Every numeric flag has a range; a huge value is refused before anything is sent
        // or allocated (a relay of 2^32 packets once asked for 68 GB).
        (vec!["turn", "turn:127.0.0.1", "--timeout", "0"], vec![]),
        (
            vec![
                "turn",
                "turn:127.0.0.1",
                "--timeout",
                "18446744073709551615",
            ],
            vec![],
        ),
        (
            vec!["turn", "turn:127.0.0.1", "--lifetime", "4294967295"],
            vec![],
        ),
        (
            vec!["turn", "turn:127.0.0.1", "--user", "x", "--rest-ttl", "0"],
            vec![("STUNMAP_TURN_SECRET", "s")],
        ),
        (
            vec![
                "relay",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--count",
                "4294967295",
            ],
            vec![("STUNMAP_TURN_PASSWORD", "a")],
        ),
        (
            vec![
                "relay",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--rate",
                "4294967295",
            ],
            vec![("STUNMAP_TURN_PASSWORD", "a")],
        ),
        (
            vec![
                "relay",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--count",
                "100000",
                "--rate",
                "10",
            ],
            vec![("STUNMAP_TURN_PASSWORD", "a")],
        ),
        (
            vec!["relay", "turn:127.0.0.1", "--user", "x", "--size", "70000"],
            vec![("STUNMAP_TURN_PASSWORD", "a")],
        ),
        (
            vec![
                "relay",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--linger",
                "99999999999",
            ],
            vec![("STUNMAP_TURN_PASSWORD", "a")],
        ),
        (vec!["audit", "turn:127.0.0.1", "--timeout", "0"], vec![]),
        (vec!["audit", "turn:127.0.0.1", "--tls-port", "0"], vec![]),
        // Password and secret files are read with a cap: an endless file is refused.
        (
            vec![
                "turn",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--password-file",
                "/dev/zero",
            ],
            vec![],
        ),
        (
            vec![
                "audit",
                "turn:127.0.0.1",
                "--user",
                "x",
                "--secret-file",
                "/dev/zero",
            ],
            vec![],
        ),
    ] {
        let start = std::time::Instant::now();
        let out = stunmap_env(&args, &env);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(start.elapsed().as_secs() < 5, "{args:?}");
    }
    let out = stunmap_env(
        &[
            "turn",
            "turn:127.0.0.1",
            "--user",
            "x",
            "--password-file",
            "/dev/zero",
        ],
        &[],
    );
    assert!(
        stderr(&out).contains("larger than 64 KiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn relay_rtt_through_real_allocations_per_transport() {
    if !have("turnserver") || !have("openssl") {
        return;
    }
    let lab = coturn_lab(TurnAuth::Static, true);
    let tls_port = lab.tls_port.unwrap().to_string();
    let out = stunmap_env(
        &[
            "relay",
            &format!("turn:127.0.0.1:{}", lab.port),
            "--user",
            "test",
            "--transports",
            "udp,tcp,tls",
            "--tls-port",
            &tls_port,
            "--ca-file",
            &lab.cert(),
            "--count",
            "50",
            "--rate",
            "200",
            "--size",
            "200",
            "--linger",
            "300",
            "--json",
        ],
        PW,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    no_secret_in(&out, "secret\"");
    let j = json(&out);
    crate::common::validate("relay-v1.json", &j);
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for (run, t) in runs.iter().zip(["udp", "tcp", "tls"]) {
        assert_eq!(run["transport"], t);
        assert_eq!(run["status"], "ok", "{run}");
        let r = &run["result"];
        assert_eq!(r["status"]["kind"], "allocated", "{run}");
        assert_eq!(r["channel_bind"]["kind"], "ok", "{run}");
        // Every packet came back through the relay, byte for byte.
        assert_eq!(r["sent"], 50, "{run}");
        assert_eq!(r["received"], 50, "{run}");
        assert_eq!(r["corrupted"], 0);
        assert_eq!(r["duplicates"], 0);
        assert_eq!(run["loss"], 0.0);
        assert_eq!(run["relay_rtt"]["samples"], 50);
        assert!(run["relay_rtt"]["median"].as_f64().unwrap() > 0.0);
        assert_eq!(run["direct_rtt"]["samples"], 5, "{run}");
        assert_eq!(r["release"]["kind"], "released", "{run}");
    }
    assert_eq!(lab.allocations_made(), 3);
    lab.assert_no_allocations_left();
}

#[test]
fn relay_with_indications_and_rest_credentials() {
    if !have("turnserver") {
        return;
    }
    let lab = coturn_lab(TurnAuth::RestSecret("k3y"), false);
    let out = stunmap_env(
        &[
            "relay",
            &format!("turn:127.0.0.1:{}?transport=tcp", lab.port),
            "--user",
            "bob",
            "--mode",
            "indication",
            "--count",
            "20",
            "--rate",
            "200",
            "--linger",
            "300",
            "--json",
        ],
        &[("STUNMAP_TURN_SECRET", "k3y")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json(&out);
    crate::common::validate("relay-v1.json", &j);
    let r = &j["runs"][0]["result"];
    assert_eq!(r["received"], 20, "{j}");
    assert!(r["channel_bind"].is_null());
    lab.assert_no_allocations_left();
}

#[cfg(unix)]
#[test]
fn sigint_mid_benchmark_still_releases_every_allocation() {
    if !have("turnserver") {
        return;
    }
    let lab = coturn_lab(TurnAuth::Static, false);
    for transport in ["udp", "tcp"] {
        let child = std::process::Command::new(crate::common::bin())
            .args([
                "relay",
                &format!("turn:127.0.0.1:{}?transport={transport}", lab.port),
                "--user",
                "test",
                "--count",
                "5000",
                "--rate",
                "100",
                "--json",
            ])
            .env("STUNMAP_TURN_PASSWORD", "secret")
            .env_remove("STUNMAP_TURN_SECRET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the loop runs: coturn logged the channel binding.
        let start = std::time::Instant::now();
        let binds = |log: &str| log.matches("CHANNEL_BIND processed, success").count();
        let before = if transport == "udp" { 0 } else { 1 };
        while binds(&lab.log()) <= before {
            assert!(
                start.elapsed().as_secs() < 10,
                "no channel bound\n{}",
                lab.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pid = child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process, which is still running (not
        // waited for yet).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
        let j = json(&out);
        crate::common::validate("relay-v1.json", &j);
        assert_eq!(j["interrupted"], true);
        assert_eq!(j["exit_code"], 130);
        let r = &j["runs"][0]["result"];
        assert_eq!(r["cancelled"], true, "{j}");
        let sent = r["sent"].as_u64().unwrap();
        assert!(sent > 0 && sent < 5000, "{j}");
        assert_eq!(r["release"]["kind"], "released", "{j}");
    }
    assert_eq!(lab.allocations_made(), 2);
    lab.assert_no_allocations_left();
}
