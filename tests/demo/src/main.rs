//! The quick-start demo. It starts a local Key Vault (the emulator, with its own CA) seeded with a
//! secret, an RSA key, an EC key and a certificate with a chain; mounts `class.yaml` through
//! `azure.wasm` into `target/demo/mnt` with the same code `secrets-store-host mount` runs; prints the
//! tree; then rotates the secret in the vault, mounts again and shows the file change.

use std::path::{Path, PathBuf};

use keyvault_emulator::{
    CertificateImport, Config, Emulator, KeyOptions, KeySource, RunningEmulator, VaultSpec,
};
use secrets_store_host::local::{LocalMount, MountOptions, SandboxOptions};

const VAULT: &str = "demo-vault";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-client-secret";

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let workdir = target_dir().join("demo");
    let mount_dir = workdir.join("mnt");
    if workdir.exists() {
        std::fs::remove_dir_all(&workdir)?;
    }
    std::fs::create_dir_all(&workdir)?;

    step("starting a local Key Vault (emulator) with its own test CA");
    let emulator = Emulator::start(Config {
        ca_out: Some(workdir.join("ca.pem")),
        ..Config::default()
    })
    .await?;
    seed(&emulator).await?;
    println!(
        "   vault https://{VAULT}.vault.azure.net -> {}",
        emulator.https_addr()
    );

    let secrets = workdir.join("nodepublishsecret.yaml");
    std::fs::write(
        &secrets,
        format!("clientid: {CLIENT_ID}\nclientsecret: {CLIENT_SECRET}\n"),
    )?;
    let options = MountOptions {
        provider: PathBuf::from(secrets_store_artifacts::AZURE),
        class: Path::new(env!("CARGO_MANIFEST_DIR")).join("class.yaml"),
        target: mount_dir.clone(),
        secrets: Some(secrets),
        pod_name: "demo-pod".into(),
        pod_namespace: "default".into(),
        pod_uid: "7c0e8a3e-0000-4000-8000-000000000001".into(),
        service_account: "default".into(),
        sa_tokens: Vec::new(),
        sandbox: SandboxOptions {
            allow_hosts: vec![
                format!("https://{VAULT}.vault.azure.net"),
                "https://login.microsoftonline.com".into(),
            ],
            resolve: emulator
                .resolve_overrides()
                .iter()
                .map(|(host, port, addr)| format!("{host}:{port}={addr}"))
                .collect(),
            ca: vec![workdir.join("ca.pem")],
            ..SandboxOptions::default()
        },
        json: false,
    };
    let runtime = options.sandbox.runtime()?;
    let local = LocalMount::prepare(options, &runtime).await?;

    step(
        "mounting class.yaml through azure.wasm (sandboxed: only the vault and AAD are reachable)",
    );
    let report = local.mount().await?;
    print!("{}", indent(&report.render()));
    print_tree(&mount_dir)?;
    let before = std::fs::read_to_string(mount_dir.join("db-password"))?;

    step("mounting again with nothing changed in the vault");
    let report = local.mount().await?;
    println!(
        "   {}",
        if report.changed {
            "files rewritten"
        } else {
            "identical payload: nothing written"
        }
    );

    step("rotating db-password in the vault, then mounting again (a republish)");
    emulator.set_secret(VAULT, "db-password", "rotated-s3cret", None)?;
    let report = local.mount().await?;
    let after = std::fs::read_to_string(mount_dir.join("db-password"))?;
    println!(
        "   db-password: {before:?} -> {after:?} ({})",
        if report.changed {
            "atomically swapped"
        } else {
            "unchanged?"
        }
    );
    let counters = emulator.counters();
    println!("   Key Vault saw {counters:?}");

    emulator.shutdown().await;
    step(&format!(
        "done; the mounted files stay in {}",
        mount_dir.display()
    ));
    if before == after {
        return Err("the rotated secret did not reach the mount".into());
    }
    Ok(())
}

async fn seed(emulator: &RunningEmulator) -> Result<(), Error> {
    emulator.add_vault(VaultSpec::new(VAULT, TENANT))?;
    emulator.add_app(TENANT, CLIENT_ID, CLIENT_SECRET);
    emulator.set_secret(VAULT, "db-password", "s3cret-v1", Some("text/plain"))?;
    emulator
        .create_key(
            VAULT,
            "signing-rsa",
            KeySource::GenerateRsa { bits: 2048 },
            KeyOptions::default(),
        )
        .await?;
    emulator
        .create_key(
            VAULT,
            "signing-ec",
            KeySource::GenerateEc {
                curve: keyvault_emulator::Curve::P256,
            },
            KeyOptions::default(),
        )
        .await?;
    emulator.import_certificate(
        VAULT,
        "web-tls",
        CertificateImport {
            content_type: None,
            ..CertificateImport::pem(&chain_pem()?)
        },
    )?;
    Ok(())
}

/// A leaf → intermediate → root chain with the leaf's key, as one PEM bundle (imported as PFX-backed).
fn chain_pem() -> Result<String, rcgen::Error> {
    let ca = |name: &str| -> Result<(rcgen::CertificateParams, rcgen::KeyPair), rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ok((params, rcgen::KeyPair::generate()?))
    };
    let (root_params, root_key) = ca("Demo Root CA")?;
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key)?;
    let (mid_params, mid_key) = ca("Demo Intermediate CA")?;
    let intermediate = rcgen::CertifiedIssuer::signed_by(mid_params, mid_key, &root)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["demo.example.com".to_string()])?
        .signed_by(&leaf_key, &intermediate)?;
    Ok(format!(
        "{}{}{}{}",
        leaf_key.serialize_pem(),
        leaf.pem(),
        intermediate.pem(),
        root.pem()
    ))
}

fn print_tree(dir: &Path) -> std::io::Result<()> {
    println!("   {}/", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let link = std::fs::read_link(entry.path()).ok();
        match link {
            Some(to) => println!("     {name} -> {}", to.display()),
            None => println!("     {name}/"),
        }
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    dir.canonicalize().unwrap_or(dir)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
