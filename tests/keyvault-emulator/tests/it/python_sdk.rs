//! Compatibility with Azure's official Python SDK, unmodified: a venv (created once and reused under
//! the target directory's `tools/pyenv`) gets the pinned `azure-identity` and `azure-keyvault-*`
//! packages, then `tests/python/sdk_roundtrip.py` runs against an in-process emulator. Any pip or SDK
//! failure fails the test.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keyvault_emulator::{Config, TokenKind};

use crate::common::*;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates the venv and installs the pinned SDK unless the same requirements are already installed.
fn python_env() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target tmp dir has a parent")
        .to_path_buf();
    let venv = target.join("tools").join("pyenv");
    let requirements = crate_dir().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements.txt");
    let marker = venv.join(".installed-requirements");
    let python = venv.join("bin").join("python");
    if python.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str())
    {
        return python;
    }
    std::fs::create_dir_all(venv.parent().expect("parent")).expect("tools dir");
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/python/requirements.txt",
    );
    std::fs::write(&marker, wanted).expect("marker");
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_roundtrip() {
    let python = tokio::task::spawn_blocking(python_env)
        .await
        .expect("venv task");

    let fx = Fixtures::new();
    fx.self_signed("sdk", "rsa:2048", &[]);
    fx.pfx("sdk", "sdk.pfx", "pfx-pass", None, &[]);
    let bundle = format!(
        "{}{}",
        String::from_utf8(fx.read("sdk.key")).unwrap(),
        String::from_utf8(fx.read("sdk.pem")).unwrap()
    );
    std::fs::write(fx.path("bundle.pem"), bundle).unwrap();
    let leaf_sha1 = fx.sha1_of("sdk.pem");

    let ca = fx.path("ca.pem");
    let (emu, _client) = standard_with(Config {
        ca_out: Some(ca.clone()),
        ..Config::default()
    })
    .await;

    let mut child = tokio::process::Command::new(&python)
        .arg(crate_dir().join("tests/python/sdk_roundtrip.py"))
        .env("KVEMU_HTTPS_PORT", emu.https_addr().port().to_string())
        .env("KVEMU_CA", &ca)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("KVEMU_TENANT", TENANT)
        .env("KVEMU_CLIENT_ID", CLIENT_ID)
        .env("KVEMU_CLIENT_SECRET", CLIENT_SECRET)
        .env("KVEMU_VAULT_URL", emu.vault_url(VAULT).unwrap())
        .env("KVEMU_PFX", fx.path("sdk.pfx"))
        .env("KVEMU_PFX_PASSWORD", "pfx-pass")
        .env("KVEMU_PEM_BUNDLE", fx.path("bundle.pem"))
        .env("KVEMU_LEAF_SHA1", &leaf_sha1)
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_AUTHORITY_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stdout), &mut s)
            .await
            .ok();
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stderr), &mut s)
            .await
            .ok();
        s
    });
    let status = tokio::time::timeout(Duration::from_secs(600), child.wait())
        .await
        .expect("the SDK script finishes within 10 minutes")
        .expect("wait");
    let out = read_out.await.unwrap();
    let err = read_err.await.unwrap();
    assert!(
        status.success() && out.contains("sdk-roundtrip: ok"),
        "SDK script failed ({status}):\nstdout:\n{out}\nstderr:\n{err}\nrequests:\n{:#?}",
        emu.request_log()
    );

    let c = emu.counters();
    assert!(
        c.challenges >= 3,
        "each client starts with a challenge: {c:?}"
    );
    assert!(c.tokens(TokenKind::ClientSecret) >= 1, "{c:?}");
    assert!(
        c.discovery_requests >= 1,
        "MSAL fetched the OpenID configuration: {c:?}"
    );
    assert_eq!(c.token_failures, 0, "{c:?}");
    emu.shutdown().await;
}
