//! The `keyvault-emulator` binary: starts from flags and a seed file, prints its addresses, resolve
//! mappings and "ready", serves IMDS and the vault, and exits cleanly on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::common::*;

#[tokio::test]
async fn binary_serves_seed_until_sigterm() {
    let fx = Fixtures::new();
    std::fs::write(
        fx.path("seed.yaml"),
        format!(
            r#"
vaults:
  - name: {VAULT}
    tenant: {TENANT}
    secrets:
      - name: from-cli
        versions:
          - value: cli-value
identities:
  apps:
    - {{tenant: {TENANT}, clientId: {CLIENT_ID}, clientSecret: "{CLIENT_SECRET}"}}
  managed:
    - {{tenant: {TENANT}, clientId: node-mi, systemAssigned: true}}
"#
        ),
    )
    .unwrap();
    let ca = fx.path("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyvault-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--rng-seed",
            "9",
        ])
        .arg("--ca-out")
        .arg(&ca)
        .arg("--seed")
        .arg(fx.path("seed.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout line");
            let done = line == "ready";
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("ready"), "{lines:?}");
    let addr = |prefix: &str| -> SocketAddr {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line in {lines:?}"))
            .parse()
            .unwrap()
    };
    let https = addr("https: ");
    let http = addr("http: ");
    assert!(lines.contains(&format!(
        "connect-to: myvault.vault.azure.net:443:127.0.0.1:{}",
        https.port()
    )));
    assert!(lines.contains(&format!(
        "connect-to: 169.254.169.254:80:127.0.0.1:{}",
        http.port()
    )));
    assert!(lines.contains(&format!(
        "connect-to: login.microsoftonline.com:443:127.0.0.1:{}",
        https.port()
    )));

    let ca_pem = std::fs::read(&ca).expect("CA written");
    let client = Client::with_ca(&ca_pem, https, http);
    let token = client.token().await;
    let r = client
        .get(
            &vault_url(&format!("/secrets/from-cli?{API}")),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], "cli-value");
    let r = client
        .get_h2(&vault_url(&format!("/secrets/from-cli?{API}")), &token)
        .await
        .expect("HTTP/2 request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], "cli-value");
    let r = client
        .send(
            "GET",
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net",
            &[("Metadata", "true")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.json()["client_id"], "node-mi");

    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");

    // Invalid flags are refused with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_keyvault-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--fault-429-rate",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--fault-429-rate must be between 0 and 1")
    );
}
