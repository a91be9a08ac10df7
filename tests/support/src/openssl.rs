//! The `openssl` CLI as the independent oracle of the PKI tests: it makes the keys, certificates
//! and PFX files, and says what the bytes written for them must be (never the code under test).
//!
//! [`Ca`] is the builder the suites share: a root, an intermediate under it and leaves under
//! that, in a temporary directory, with the extensions a chain needs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `openssl req` configuration every chain is issued with: CA and leaf extensions.
pub const CONFIG: &str = "[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:app.e2e.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// Runs `openssl args…` in `dir`; panics with its stderr on failure. Returns its stdout.
pub fn run(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running the openssl CLI (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// [`run`] with whitespace-separated arguments (none of them may contain a space).
pub fn run_words(dir: &Path, args: &str) -> Vec<u8> {
    run(dir, &args.split_whitespace().collect::<Vec<_>>())
}

/// [`run`], its stdout as text.
pub fn text(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(run(dir, args))
        .unwrap_or_else(|e| panic!("openssl {args:?} wrote non-UTF-8 output: {e}"))
}

/// The PEM blocks of openssl's text output, without the bag attribute lines it prints around them.
pub fn pem_blocks_only(text: &[u8]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in String::from_utf8_lossy(text).lines() {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END ") {
            inside = false;
        }
    }
    out
}

/// A root CA and an intermediate CA issued by it, in a directory of their own; issues leaves.
///
/// File names in the directory: `ca.cnf`, `root.crt`, `intermediate.crt`, and the key files the
/// caller wrote (or generated) there.
pub struct Ca {
    dir: PathBuf,
    /// `openssl x509` of the root.
    pub root_pem: String,
    /// `openssl x509` of the intermediate.
    pub intermediate_pem: String,
    intermediate_key: String,
}

impl Ca {
    /// Issues the root (self-signed, key file `root_key`, serial 1) and the intermediate (key file
    /// `intermediate_key`, serial 2) in `dir`, valid for `days`. The key files must be in `dir`.
    pub fn issue(
        dir: &Path,
        (root_key, root_cn): (&str, &str),
        (intermediate_key, intermediate_cn): (&str, &str),
        days: u32,
    ) -> Ca {
        std::fs::write(dir.join("ca.cnf"), CONFIG)
            .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join("ca.cnf").display()));
        let days = days.to_string();
        let root_subject = format!("/CN={root_cn}");
        run(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
                "-key",
                root_key,
                "-subj",
                &root_subject,
                "-days",
                &days,
                "-set_serial",
                "1",
                "-out",
                "root.crt",
            ],
        );
        let intermediate_subject = format!("/CN={intermediate_cn}");
        run(
            dir,
            &[
                "req",
                "-new",
                "-config",
                "ca.cnf",
                "-key",
                intermediate_key,
                "-subj",
                &intermediate_subject,
                "-out",
                "intermediate.csr",
            ],
        );
        run(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "intermediate.csr",
                "-CA",
                "root.crt",
                "-CAkey",
                root_key,
                "-set_serial",
                "2",
                "-days",
                &days,
                "-extfile",
                "ca.cnf",
                "-extensions",
                "v3_ca",
                "-out",
                "intermediate.crt",
            ],
        );
        Ca {
            root_pem: text(dir, &["x509", "-in", "root.crt"]),
            intermediate_pem: text(dir, &["x509", "-in", "intermediate.crt"]),
            dir: dir.to_path_buf(),
            intermediate_key: intermediate_key.to_string(),
        }
    }

    /// The directory the chain lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues a leaf for the key file `key` (in the directory) with subject `/CN={cn}`; writes
    /// `{cn}.crt`, valid for `days`, and returns its file name.
    pub fn leaf(&self, key: &str, cn: &str, serial: u32, days: u32) -> String {
        let csr = format!("{cn}.csr");
        let crt = format!("{cn}.crt");
        let subject = format!("/CN={cn}");
        run(
            &self.dir,
            &[
                "req", "-new", "-config", "ca.cnf", "-key", key, "-subj", &subject, "-out", &csr,
            ],
        );
        run(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "intermediate.crt",
                "-CAkey",
                &self.intermediate_key,
                "-set_serial",
                &serial.to_string(),
                "-days",
                &days.to_string(),
                "-extfile",
                "ca.cnf",
                "-extensions",
                "v3_leaf",
                "-out",
                &crt,
            ],
        );
        crt
    }
}
