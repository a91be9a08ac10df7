//! Certificate import: PFX with legacy, AES and no encryption, PEM bundles with a shuffled chain, EC
//! keys; the certificate bundle (`cer`, `x5t`, ids, policy) and the backing secret and key, checked
//! against the `openssl` CLI.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyvault_emulator::{CertificateImport, Config, Emulator, Seed};
use serde_json::{Value, json};

use crate::common::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn import(client: &Client, token: &str, name: &str, body: Value) -> Resp {
    client
        .json_call(
            "POST",
            &vault_url(&format!("/certificates/{name}/import?{API}")),
            token,
            &body,
        )
        .await
}

/// Checks the certificate bundle and its backing objects against openssl's view of `pem_name`.
async fn check_imported(
    client: &Client,
    token: &str,
    fx: &Fixtures,
    name: &str,
    bundle: &Value,
    pem_name: &str,
    content_type: &str,
) -> (Value, Value) {
    let id = bundle["id"].as_str().unwrap();
    let prefix = format!("https://{VAULT}.vault.azure.net/certificates/{name}/");
    let version = id.strip_prefix(&prefix).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(version.len(), 32);
    assert_eq!(
        bundle["kid"],
        format!("https://{VAULT}.vault.azure.net/keys/{name}/{version}")
    );
    assert_eq!(
        bundle["sid"],
        format!("https://{VAULT}.vault.azure.net/secrets/{name}/{version}")
    );
    // cer is the leaf's DER and x5t its SHA-1 thumbprint, both as openssl computes them.
    let der = fx.der_of(pem_name);
    assert_eq!(
        STANDARD.decode(bundle["cer"].as_str().unwrap()).unwrap(),
        der
    );
    let x5t = URL_SAFE_NO_PAD
        .decode(bundle["x5t"].as_str().unwrap())
        .unwrap();
    assert_eq!(hex(&x5t), fx.sha1_of(pem_name));
    let attrs = &bundle["attributes"];
    assert_eq!(attrs["enabled"], true);
    assert!(attrs["nbf"].as_i64().unwrap() <= now() && attrs["exp"].as_i64().unwrap() > now());
    assert_eq!(attrs["recoveryLevel"], "Recoverable+Purgeable");
    let policy = &bundle["policy"];
    assert_eq!(
        policy["id"],
        format!("https://{VAULT}.vault.azure.net/certificates/{name}/policy")
    );
    assert_eq!(policy["secret_props"]["contentType"], content_type);
    assert_eq!(policy["key_props"]["exportable"], true);
    assert_eq!(policy["issuer"]["name"], "Unknown");

    let secret = client
        .get(
            &vault_url(&format!("/secrets/{name}/{version}?{API}")),
            Some(token),
        )
        .await;
    assert_eq!(secret.status, 200, "{}", secret.text());
    let secret = secret.json();
    assert_eq!(secret["contentType"], content_type);
    assert_eq!(secret["managed"], true);
    assert_eq!(secret["kid"], bundle["kid"]);
    assert_eq!(secret["attributes"]["exp"], attrs["exp"]);

    let key = client
        .get(
            &vault_url(&format!("/keys/{name}/{version}?{API}")),
            Some(token),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text());
    let key = key.json();
    assert_eq!(key["key"]["kid"], bundle["kid"]);
    assert_eq!(key["managed"], true);
    (secret, key)
}

/// Writes the backing PFX and reads it back with openssl and an empty password.
fn check_exported_pfx(fx: &Fixtures, secret_value: &str, pem_name: &str, out: &str) -> String {
    std::fs::write(fx.path(out), STANDARD.decode(secret_value).unwrap()).unwrap();
    let certs_pem = format!("{out}.certs.pem");
    openssl(
        fx.dir.path(),
        &[
            "pkcs12", "-in", out, "-passin", "pass:", "-nokeys", "-legacy", "-out", &certs_pem,
        ],
    );
    assert_eq!(
        fx.sha1_of(&format!("{out}.certs.pem")),
        fx.sha1_of(pem_name)
    );
    let keys = openssl(
        fx.dir.path(),
        &[
            "pkcs12", "-in", out, "-passin", "pass:", "-nocerts", "-nodes", "-legacy",
        ],
    );
    assert!(String::from_utf8_lossy(&keys).contains("-----BEGIN PRIVATE KEY-----"));
    // `-info` prints the bag encryption on stderr; run it capturing both.
    let o = std::process::Command::new("openssl")
        .args([
            "pkcs12", "-in", out, "-passin", "pass:", "-info", "-noout", "-legacy",
        ])
        .current_dir(fx.dir.path())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn import_pfx_with_each_encryption() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let fx = Fixtures::new();
    fx.self_signed("rsa", "rsa:2048", &[]);
    fx.pfx("rsa", "legacy.pfx", "pw", None, &["-legacy"]);
    fx.pfx("rsa", "aes.pfx", "pw", None, &[]);
    fx.pfx(
        "rsa",
        "plain.pfx",
        "",
        None,
        &["-keypbe", "NONE", "-certpbe", "NONE", "-nomac"],
    );
    let modulus = String::from_utf8(openssl(
        fx.dir.path(),
        &["x509", "-in", "rsa.pem", "-noout", "-modulus"],
    ))
    .unwrap()
    .trim()
    .trim_start_matches("Modulus=")
    .to_ascii_lowercase();

    for (file, pwd) in [
        ("legacy.pfx", Some("pw")),
        ("aes.pfx", Some("pw")),
        ("plain.pfx", None),
    ] {
        let name = file.trim_end_matches(".pfx");
        let mut body = json!({"value": STANDARD.encode(fx.read(file))});
        if let Some(p) = pwd {
            body["pwd"] = json!(p);
        }
        let r = import(&client, &token, name, body).await;
        assert_eq!(r.status, 200, "{file}: {}", r.text());
        let bundle = r.json();
        assert_eq!(bundle["policy"]["key_props"]["kty"], "RSA");
        assert_eq!(bundle["policy"]["key_props"]["key_size"], 2048);
        assert_eq!(bundle["policy"]["x509_props"]["subject"], "CN=rsa.example");
        assert_eq!(
            bundle["policy"]["x509_props"]["sans"]["dns_names"],
            json!(["rsa.example", "www.rsa.example"])
        );
        let (secret, key) = check_imported(
            &client,
            &token,
            &fx,
            name,
            &bundle,
            "rsa.pem",
            "application/x-pkcs12",
        )
        .await;
        let n = URL_SAFE_NO_PAD
            .decode(key["key"]["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex(&n), modulus);
        assert_eq!(key["key"]["e"], "AQAB");
        let info = check_exported_pfx(
            &fx,
            secret["value"].as_str().unwrap(),
            "rsa.pem",
            &format!("{name}.out.pfx"),
        );
        // The service's re-export: legacy PBE, empty password.
        assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
        assert!(info.contains("pbeWithSHA1And40BitRC2-CBC"), "{info}");
        assert!(info.contains("MAC: sha1"), "{info}");
    }

    // GET the certificate (latest) and its version list.
    let latest = client
        .get(
            &vault_url(&format!("/certificates/aes?{API}")),
            Some(&token),
        )
        .await;
    assert_eq!(latest.status, 200);
    let versions = client
        .get(
            &vault_url(&format!("/certificates/aes/versions?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(versions["value"].as_array().unwrap().len(), 1);
    assert_eq!(versions["value"][0]["x5t"], latest.json()["x5t"]);
    let policy = client
        .get(
            &vault_url(&format!("/certificates/aes/policy?{API}")),
            Some(&token),
        )
        .await;
    assert_eq!(policy.status, 200);
    assert_eq!(
        policy.json()["secret_props"]["contentType"],
        "application/x-pkcs12"
    );

    // A wrong password is the service's 400.
    let r = import(
        &client,
        &token,
        "bad",
        json!({"value": STANDARD.encode(fx.read("aes.pfx")), "pwd": "nope"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"code": "BadParameter", "message": "The specified PKCS#12 X.509 certificate content can not be read. Please check if certificate is in valid PKCS#12 format."}})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn import_pem_chain_as_pem_secret() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let fx = Fixtures::new();
    fx.chain();
    let read = |n: &str| String::from_utf8(fx.read(n)).unwrap();
    // Chain order in the input is scrambled on purpose; the emulator orders leaf → root.
    let bundle_text = format!(
        "{}{}{}{}",
        read("root.pem"),
        read("leaf.key"),
        read("inter.pem"),
        read("leaf.pem")
    );
    let r = import(
        &client,
        &token,
        "chain",
        json!({"value": bundle_text, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bundle = r.json();
    assert_eq!(
        bundle["policy"]["x509_props"]["ekus"],
        json!(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
    );
    assert_eq!(
        bundle["policy"]["x509_props"]["key_usage"],
        json!(["digitalSignature", "keyEncipherment"])
    );
    let (secret, _) = check_imported(
        &client,
        &token,
        &fx,
        "chain",
        &bundle,
        "leaf.pem",
        "application/x-pem-file",
    )
    .await;
    let value = secret["value"].as_str().unwrap();
    let blocks: Vec<&str> = value
        .split("-----BEGIN ")
        .skip(1)
        .map(|b| b.split("-----").next().unwrap())
        .collect();
    assert_eq!(
        blocks,
        ["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE", "CERTIFICATE"]
    );
    assert!(!value.contains('\r'));
    // Each certificate in the secret, in order, is leaf, intermediate, root.
    let certs: Vec<String> = value
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            format!(
                "-----BEGIN CERTIFICATE-----{}",
                b.split("-----END CERTIFICATE-----").next().unwrap()
            ) + "-----END CERTIFICATE-----\n"
        })
        .collect();
    for (i, expected) in ["leaf.pem", "inter.pem", "root.pem"].iter().enumerate() {
        std::fs::write(fx.path(&format!("out{i}.pem")), &certs[i]).unwrap();
        assert_eq!(
            fx.sha1_of(&format!("out{i}.pem")),
            fx.sha1_of(expected),
            "position {i}"
        );
    }
    // The key in the secret is the leaf's (openssl agrees on the public key).
    std::fs::write(fx.path("outkey.pem"), value).unwrap();
    let a = openssl(fx.dir.path(), &["pkey", "-in", "outkey.pem", "-pubout"]);
    let b = openssl(
        fx.dir.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
    );
    assert_eq!(a, b);

    // Base64 of PEM text (what the Python SDK sends) is accepted too; a PEM without key is not.
    let r = import(
        &client,
        &token,
        "chain-b64",
        json!({"value": STANDARD.encode(bundle_text.as_bytes()), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = import(&client, &token, "nokey", json!({"value": read("leaf.pem"), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}})).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Private key is not specified"));
    emu.shutdown().await;
}

#[tokio::test]
async fn import_ec_certificates() {
    let (emu, client) = standard().await;
    let token = client.token().await;
    let fx = Fixtures::new();
    for (curve, len) in [("P-256", 32), ("P-384", 48), ("P-521", 66)] {
        let name = format!("ec{}", &curve[2..]);
        fx.self_signed(
            &name,
            "ec",
            &["-pkeyopt", &format!("ec_paramgen_curve:{curve}")],
        );
        fx.pfx(&name, &format!("{name}.pfx"), "pw", None, &[]);
        let r = import(
            &client,
            &token,
            &name,
            json!({"value": STANDARD.encode(fx.read(&format!("{name}.pfx"))), "pwd": "pw"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let bundle = r.json();
        assert_eq!(bundle["policy"]["key_props"]["kty"], "EC");
        assert_eq!(bundle["policy"]["key_props"]["crv"], curve);
        let (_, key) = check_imported(
            &client,
            &token,
            &fx,
            &name,
            &bundle,
            &format!("{name}.pem"),
            "application/x-pkcs12",
        )
        .await;
        assert_eq!(key["key"]["kty"], "EC");
        assert_eq!(key["key"]["crv"], curve);
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["key"]["x"].as_str().unwrap())
                .unwrap()
                .len(),
            len
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn library_and_seed_imports() {
    let fx = Fixtures::new();
    fx.self_signed("seeded", "rsa:2048", &[]);
    fx.pfx("seeded", "seeded.pfx", "pw", None, &["-legacy"]);
    openssl(
        fx.dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.pem",
        ],
    );
    let seed_yaml = format!(
        r#"
vaults:
  - name: {VAULT}
    tenant: {TENANT}
    secrets:
      - name: greeting
        versions:
          - value: hello
          - value: hello again
            contentType: text/plain
    keys:
      - name: eckey
        versions:
          - pem: k.pem
          - generate: {{kty: EC, crv: P-521}}
            enabled: false
    certificates:
      - name: seeded
        versions:
          - file: seeded.pfx
            password: pw
            contentType: application/x-pem-file
identities:
  apps:
    - {{tenant: {TENANT}, clientId: {CLIENT_ID}, clientSecret: "{CLIENT_SECRET}"}}
"#
    );
    std::fs::write(fx.path("seed.yaml"), seed_yaml).unwrap();
    let seed = Seed::from_yaml_file(&fx.path("seed.yaml")).unwrap();
    let emu = Emulator::start(Config {
        seed: Some(seed),
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::new(&emu);
    let token = client.token().await;
    let r = client
        .get(
            &vault_url(&format!("/secrets/greeting?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(r["value"], "hello again");
    let versions = client
        .get(
            &vault_url(&format!("/keys/eckey/versions?{API}")),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    assert_eq!(versions["value"][1]["attributes"]["enabled"], false);
    let secret = client
        .get(&vault_url(&format!("/secrets/seeded?{API}")), Some(&token))
        .await
        .json();
    assert_eq!(secret["contentType"], "application/x-pem-file");
    assert!(
        secret["value"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );

    // Library import of PEM and of a PFX; the secret follows the requested content type.
    let pem = format!(
        "{}{}",
        String::from_utf8(fx.read("seeded.key")).unwrap(),
        String::from_utf8(fx.read("seeded.pem")).unwrap()
    );
    let imported = emu
        .import_certificate(VAULT, "lib-pem", CertificateImport::pem(&pem))
        .unwrap();
    let cert = client
        .get(
            &vault_url(&format!("/certificates/lib-pem/{}?{API}", imported.version)),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(cert["x5t"], imported.x5t);
    let imported = emu
        .import_certificate(
            VAULT,
            "lib-pfx",
            CertificateImport::pfx(fx.read("seeded.pfx"), Some("pw")),
        )
        .unwrap();
    let secret = client
        .get(
            &vault_url(&format!("/secrets/lib-pfx/{}?{API}", imported.version)),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(secret["contentType"], "application/x-pkcs12");
    assert!(
        emu.import_certificate(
            VAULT,
            "wrong",
            CertificateImport::pfx(fx.read("seeded.pfx"), Some("bad"))
        )
        .is_err()
    );
    emu.shutdown().await;
}
