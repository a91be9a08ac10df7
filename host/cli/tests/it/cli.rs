//! The `secrets-store-host` binary as a user runs it: `mount` of a SecretProviderClass through
//! azure.wasm against the Key Vault emulator (started in this process; the binary reaches it
//! through `--resolve` and trusts it through `--ca`), the files it leaves on disk, its JSON and text
//! reports, its failures; and `inspect` of a provider and of a module of another world.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use keyvault_emulator::{Config, Emulator, RunningEmulator, VaultSpec};
use sha2::{Digest, Sha256};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const VAULT: &str = "cli-kv";
const CLIENT_ID: &str = "2b7c9e41-5d3a-4f60-8a1b-c2d3e4f5a6b7";
const CLIENT_SECRET: &str = "cli-client-secret~Zq9.Lm4";
const DB_PASSWORD: &str = "cli-db-password-value";
const API_KEY: &str = "cli-api-key-value";

const CLASS: &str = r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: azure-kv
  namespace: default
spec:
  provider: azure
  parameters:
    keyvaultName: cli-kv
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
        - |
          objectName: api-key
          objectType: secret
          objectAlias: config/api.key
          filePermission: "0400"
"#;

/// An emulator with the vault and the service principal, and the files a user would pass.
struct Setup {
    emu: RunningEmulator,
    dir: tempfile::TempDir,
    versions: (String, String),
}

impl Setup {
    async fn start() -> Setup {
        let emu = Emulator::start(Config::default()).await.unwrap();
        emu.add_vault(VaultSpec::new(VAULT, TENANT)).unwrap();
        emu.add_app(TENANT, CLIENT_ID, CLIENT_SECRET);
        let versions = (
            emu.set_secret(VAULT, "db-password", DB_PASSWORD, None)
                .unwrap(),
            emu.set_secret(VAULT, "api-key", API_KEY, None).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("class.yaml"), CLASS).unwrap();
        // A Secret manifest, as `kubectl get secret -o yaml` prints it (data is base64).
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        std::fs::write(
            dir.path().join("secrets.yaml"),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: kv-creds\ndata:\n  clientid: {}\n  clientsecret: {}\n",
                b64(CLIENT_ID),
                b64(CLIENT_SECRET)
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), emu.ca_pem()).unwrap();
        Setup { emu, dir, versions }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--resolve` for every host the emulator serves.
    fn resolve_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (host, port, addr) in self.emu.resolve_overrides() {
            args.push("--resolve".to_string());
            args.push(format!("{host}:{port}={addr}"));
        }
        args
    }

    /// `mount` with the class, the secrets, the emulator's CA and resolve overrides, plus `extra`.
    fn mount_args(&self, target: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "mount",
            "--provider",
            secrets_store_artifacts::AZURE,
            "--class",
            self.path("class.yaml").to_str().unwrap(),
            "--secrets",
            self.path("secrets.yaml").to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--ca",
            self.path("ca.pem").to_str().unwrap(),
            "--artifact-cache",
            artifact_cache().to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.resolve_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn artifact_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-compiled-providers")
}

/// Runs the binary without blocking this thread, so the in-process emulator keeps serving.
async fn run(args: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_secrets-store-host"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> &Output {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    output
}

fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got:\n{}",
        stdout(output)
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    // What the user sees, for the test log.
    println!("{}", stderr(output).lines().last().unwrap_or_default());
    stderr(output)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn mount_writes_the_files_and_reports_them() {
    let setup = Setup::start().await;
    let target = setup.path("volume");
    let output = run(&setup.mount_args(&target, &["--allow-described-hosts", "--json"])).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(succeeded(&output))).unwrap();

    assert_eq!(report["target"], target.to_str().unwrap());
    assert_eq!(report["changed"], true);
    let files = report["files"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("db-password", "0644"), ("config/api.key", "0400")]
    );
    for (file, value) in files.iter().zip([DB_PASSWORD, API_KEY]) {
        let on_disk = target.join(file["path"].as_str().unwrap());
        assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), value);
        assert_eq!(file["bytes"], value.len());
        // The report identifies contents by a digest prefix, never by the contents.
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            &hex::encode(Sha256::digest(value))[..12]
        );
    }
    assert_eq!(mode(&target.join("db-password")), 0o644);
    assert_eq!(mode(&target.join("config/api.key")), 0o400);
    assert_eq!(
        mode(&target),
        0o750,
        "the target is created like the driver creates mount points"
    );
    let versions: Vec<(&str, &str)> = report["objectVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [
            ("secret/db-password", setup.versions.0.as_str()),
            ("secret/api-key", setup.versions.1.as_str())
        ]
    );
    assert!(
        !stdout(&output).contains(DB_PASSWORD),
        "the report never shows contents"
    );

    // The same mount again: nothing changed, nothing written (text report this time).
    let again = run(&setup.mount_args(&target, &["--allow-described-hosts"])).await;
    let text = stdout(succeeded(&again));
    assert!(
        text.contains("mounted 2 file(s)") && text.contains("unchanged, nothing written"),
        "{text}"
    );
    assert!(
        text.contains("0400")
            && text.contains("config/api.key")
            && text.contains("secret/db-password"),
        "{text}"
    );

    // Rotated in the vault: the next mount writes the new value.
    let rotated = setup
        .emu
        .set_secret(VAULT, "db-password", "rotated-db-password", None)
        .unwrap();
    let third = run(&setup.mount_args(&target, &["--allow-described-hosts", "--json"])).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(succeeded(&third))).unwrap();
    assert_eq!(report["changed"], true);
    assert_eq!(report["objectVersions"][0]["version"], rotated.as_str());
    assert_eq!(
        std::fs::read_to_string(target.join("db-password")).unwrap(),
        "rotated-db-password"
    );
}

#[tokio::test]
async fn explicit_allow_host_and_a_denied_host() {
    let setup = Setup::start().await;
    let target = setup.path("volume");
    let allowed = [
        "--allow-host",
        "https://*.vault.azure.net",
        "--allow-host",
        "https://login.microsoftonline.com",
    ];
    succeeded(&run(&setup.mount_args(&target, &allowed)).await);
    assert_eq!(
        std::fs::read_to_string(target.join("db-password")).unwrap(),
        DB_PASSWORD
    );

    // Only AAD allowed: the vault is denied and the message names it.
    let denied = failed(
        &run(&setup.mount_args(
            &setup.path("other"),
            &["--allow-host", "https://login.microsoftonline.com"],
        ))
        .await,
    );
    assert!(
        denied.contains("https://cli-kv.vault.azure.net"),
        "{denied}"
    );
    assert!(denied.contains("policy"), "{denied}");
    assert!(
        !setup.path("other").join("db-password").exists(),
        "nothing is written after a failure"
    );
}

#[tokio::test]
async fn bad_inputs_fail_with_a_message_naming_the_file() {
    let setup = Setup::start().await;
    let target = setup.path("volume");

    std::fs::write(
        setup.path("class.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-a-class\n",
    )
    .unwrap();
    let message = failed(&run(&setup.mount_args(&target, &["--allow-described-hosts"])).await);
    let class = setup.path("class.yaml").display().to_string();
    assert!(
        message.contains(&class) && message.contains("no SecretProviderClass"),
        "{message}"
    );

    std::fs::write(
        setup.path("class.yaml"),
        "kind: SecretProviderClass\nspec: [unclosed\n",
    )
    .unwrap();
    let message = failed(&run(&setup.mount_args(&target, &["--allow-described-hosts"])).await);
    assert!(message.contains(&class), "{message}");

    std::fs::write(setup.path("class.yaml"), CLASS).unwrap();
    let mut args = setup.mount_args(&target, &["--allow-described-hosts"]);
    let missing = setup.path("no-such-provider.wasm").display().to_string();
    let at = args.iter().position(|a| a == "--provider").unwrap();
    args[at + 1] = missing.clone();
    let message = failed(&run(&args).await);
    assert!(message.contains(&missing), "{message}");

    let absent_secrets = setup.path("absent-secrets.yaml");
    let mut args = setup.mount_args(&target, &["--allow-described-hosts"]);
    let at = args.iter().position(|a| a == "--secrets").unwrap();
    args[at + 1] = absent_secrets.display().to_string();
    let message = failed(&run(&args).await);
    assert!(
        message.contains(&absent_secrets.display().to_string()),
        "{message}"
    );
    assert!(!target.exists(), "no failed run created the target");
}

#[tokio::test]
async fn trace_logging_of_a_mount_leaks_nothing() {
    let setup = Setup::start().await;
    let output = run(&setup.mount_args(
        &setup.path("volume"),
        &["--allow-described-hosts", "-v", "5"],
    ))
    .await;
    succeeded(&output);
    let mut wrong = setup.mount_args(
        &setup.path("volume"),
        &["--allow-described-hosts", "--v", "5"],
    );
    std::fs::write(
        setup.path("wrong.yaml"),
        format!("clientid: {CLIENT_ID}\nclientsecret: Wrong-Secret-For-CLI\n"),
    )
    .unwrap();
    let at = wrong.iter().position(|a| a == "--secrets").unwrap();
    wrong[at + 1] = setup.path("wrong.yaml").display().to_string();
    let refused = run(&wrong).await;
    let refusal = failed(&refused);
    assert!(refusal.contains("invalid_client"), "{refusal}");
    let logs = format!("{}{}{}", stderr(&output), stdout(&refused), refusal);
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace output was produced: {logs}"
    );
    for needle in [
        DB_PASSWORD,
        API_KEY,
        CLIENT_SECRET,
        "Wrong-Secret-For-CLI",
        "eyJ",
    ] {
        assert!(!logs.contains(needle), "{needle} leaked:\n{logs}");
    }
}

#[tokio::test]
async fn inspect_describes_a_provider() {
    let azure = secrets_store_artifacts::AZURE.to_string();
    let text = stdout(succeeded(
        &run(&["inspect".to_string(), azure.clone()]).await,
    ));
    assert!(text.contains("fits secrets-store:provider@0.1"), "{text}");
    assert!(text.contains("provider   azure"), "{text}");
    assert!(text.contains("    - https://*.vault.azure.net\n"), "{text}");
    assert!(text.contains("    - http://169.254.169.254\n"), "{text}");

    let json = stdout(succeeded(
        &run(&["inspect".to_string(), "--json".to_string(), azure.clone()]).await,
    ));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["name"], "azure");
    assert_eq!(report["file"], azure.as_str());
    let bytes = std::fs::read(&azure).unwrap();
    assert_eq!(report["bytes"], bytes.len());
    assert_eq!(report["sha256"], hex::encode(Sha256::digest(&bytes)));
    let hosts: Vec<&str> = report["outboundHosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for &host in secrets_store_test_support::AZURE_HOSTS {
        assert!(hosts.contains(&host), "{host} missing from {hosts:?}");
    }
    let exports: Vec<&str> = report["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(exports, ["describe", "mount"], "the world's exports");
}

#[tokio::test]
async fn inspect_refuses_a_module_of_another_world() {
    let cli_app = secrets_store_artifacts::CLI_APP.to_string();
    let message = failed(&run(&["inspect".to_string(), cli_app]).await);
    assert!(
        message.contains("does not fit the secrets-store:provider@0.1 world"),
        "{message}"
    );
    assert!(
        message.contains("provider cli-app") && message.contains("no export `describe`"),
        "the module and the missing export are named: {message}"
    );
    let message = failed(
        &run(&[
            "inspect".to_string(),
            "/nonexistent/provider.wasm".to_string(),
        ])
        .await,
    );
    assert!(message.contains("/nonexistent/provider.wasm"), "{message}");
}
