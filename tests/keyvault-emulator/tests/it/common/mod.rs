//! Shared test support: a real HTTP/1.1 client over TLS that trusts the emulator's CA and resolves
//! every host name to the emulator (like `--resolve`), a standard seeded emulator, token helpers, and
//! certificate fixtures generated with the `openssl` CLI into a temporary directory.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use keyvault_emulator::{Config, Emulator, RunningEmulator, VaultSpec};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const OTHER_TENANT: &str = "33e01921-4d64-4f8c-a055-5bdaffd5e33d";
pub const CLIENT_ID: &str = "0e6a4a0b-2c5c-4c5e-9d2f-5b7a2c1d3e4f";
pub const CLIENT_SECRET: &str = "s3cr3t-value~for.tests";
pub const VAULT: &str = "myvault";
pub const API: &str = "api-version=7.4";

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Sends each request on a fresh connection to the emulator, whatever the URL's host says.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    tls_h2: tokio_rustls::TlsConnector,
    https: SocketAddr,
    http: SocketAddr,
}

impl Client {
    pub fn new(emu: &RunningEmulator) -> Self {
        Self::from_der(emu.ca_der(), emu.https_addr(), emu.http_addr())
    }

    /// A client trusting a CA given as PEM (e.g. the CLI's `--ca-out` file).
    pub fn with_ca(ca_pem: &[u8], https: SocketAddr, http: SocketAddr) -> Self {
        use rustls_pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_slice(ca_pem).expect("CA PEM");
        Self::from_der(&der, https, http)
    }

    fn from_der(ca_der: &[u8], https: SocketAddr, http: SocketAddr) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .expect("emulator CA is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut h2 = config.clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            tls_h2: tokio_rustls::TlsConnector::from(Arc::new(h2)),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            https,
            http,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
        let host = uri.host().ok_or("url without host")?.to_string();
        let https = uri.scheme_str() == Some("https");
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_vec())))
            .map_err(|e| e.to_string())?;
        let addr = if https { self.https } else { self.http };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let resp = if https {
            let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {host}: {e}"))?;
            send_on(TokioIo::new(tls), req).await?
        } else {
            send_on(TokioIo::new(tcp), req).await?
        };
        Ok(resp)
    }

    /// A GET over HTTP/2 (ALPN `h2`); the vault is named by `:authority` instead of `Host`.
    pub async fn get_h2(&self, url: &str, token: &str) -> Result<Resp, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
        let host = uri.host().ok_or("url without host")?.to_string();
        let tcp = TcpStream::connect(self.https)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = self
            .tls_h2
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {host}: {e}"))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("server did not negotiate h2".into());
        }
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("GET")
            .uri(url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, url: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.send("GET", url, &headers, None)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn json_call(&self, method: &str, url: &str, token: &str, body: &Value) -> Resp {
        let auth = format!("Bearer {token}");
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(
            method,
            url,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(&bytes),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    pub async fn form(&self, url: &str, pairs: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        self.send(
            "POST",
            url,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.join("&").as_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// Client-credentials token with the standard app.
    pub async fn token(&self) -> String {
        let r = self
            .form(
                &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", CLIENT_SECRET),
                    ("scope", "https://vault.azure.net/.default"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

async fn send_on<I>(io: I, req: http::Request<Full<Bytes>>) -> Result<Resp, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn vault_url(path: &str) -> String {
    format!("https://{VAULT}.vault.azure.net{path}")
}

/// An emulator with one public-cloud vault and one app registration.
pub async fn standard() -> (RunningEmulator, Client) {
    standard_with(Config::default()).await
}

pub async fn standard_with(config: Config) -> (RunningEmulator, Client) {
    let emu = Emulator::start(config).await.expect("emulator starts");
    emu.add_vault(VaultSpec::new(VAULT, TENANT)).expect("vault");
    emu.add_app(TENANT, CLIENT_ID, CLIENT_SECRET);
    let client = Client::new(&emu);
    (emu, client)
}

/// An unsigned JWT (`alg: none`) with the given claims, like a projected service-account token as
/// AAD sees it (AAD's check of the issuer's key set is out of scope for the emulator).
pub fn unsigned_jwt(claims: &Value) -> String {
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        e.encode(br#"{"alg":"none","typ":"JWT"}"#),
        e.encode(serde_json::to_vec(claims).expect("json"))
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Runs `openssl` with the arguments, panicking with its stderr on failure (the shared oracle).
pub use secrets_store_test_support::openssl::run as openssl;

/// Certificate fixtures made fresh per test run; no private keys are committed.
pub struct Fixtures {
    pub dir: tempfile::TempDir,
}

impl Fixtures {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("fixture file")
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        openssl(self.dir.path(), args)
    }

    /// Self-signed leaf `{name}.pem` with key `{name}.key`; `key_spec` is an openssl `-newkey` value.
    pub fn self_signed(&self, name: &str, key_spec: &str, extra: &[&str]) {
        let key = format!("{name}.key");
        let crt = format!("{name}.pem");
        let mut args = vec![
            "req", "-x509", "-newkey", key_spec, "-nodes", "-keyout", &key, "-out", &crt, "-days",
            "30",
        ];
        let subj = format!("/CN={name}.example");
        let san = format!("subjectAltName=DNS:{name}.example,DNS:www.{name}.example");
        args.extend(["-subj", &subj, "-addext", &san]);
        args.extend(extra);
        self.run(&args);
    }

    /// root → intermediate → leaf (`leaf.pem`, `leaf.key`, `inter.pem`, `root.pem`).
    pub fn chain(&self) {
        let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
        std::fs::write(self.path("ca.ext"), ca_ext).expect("write");
        std::fs::write(
            self.path("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:chain.example\n",
        )
        .expect("write");
        self.run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "60",
            "-subj",
            "/CN=Test Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.run(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "inter.key",
            "-out",
            "inter.csr",
            "-subj",
            "/CN=Test Intermediate",
        ]);
        self.run(&[
            "x509",
            "-req",
            "-in",
            "inter.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "inter.pem",
            "-days",
            "50",
            "-extfile",
            "ca.ext",
        ]);
        self.run(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=chain.example",
        ]);
        self.run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "inter.pem",
            "-CAkey",
            "inter.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "40",
            "-extfile",
            "leaf.ext",
        ]);
    }

    /// PFX from `{name}.key` + `{name}.pem` (+ extra cert files) with extra export flags.
    pub fn pfx(
        &self,
        name: &str,
        out: &str,
        password: &str,
        certfile: Option<&str>,
        flags: &[&str],
    ) {
        let key = format!("{name}.key");
        let crt = format!("{name}.pem");
        let pass = format!("pass:{password}");
        let mut args = vec![
            "pkcs12", "-export", "-inkey", &key, "-in", &crt, "-out", out, "-passout", &pass,
        ];
        if let Some(c) = certfile {
            args.extend(["-certfile", c]);
        }
        args.extend(flags);
        self.run(&args);
    }

    /// DER of a PEM certificate, via openssl (independent of the emulator's parser).
    pub fn der_of(&self, pem_name: &str) -> Vec<u8> {
        self.run(&["x509", "-in", pem_name, "-outform", "DER"])
    }

    /// SHA-1 fingerprint hex (lower case, no colons), via openssl.
    pub fn sha1_of(&self, pem_name: &str) -> String {
        let out = String::from_utf8(self.run(&[
            "x509",
            "-in",
            pem_name,
            "-noout",
            "-fingerprint",
            "-sha1",
        ]))
        .expect("utf8");
        out.trim()
            .rsplit('=')
            .next()
            .expect("fingerprint")
            .replace(':', "")
            .to_ascii_lowercase()
    }
}
