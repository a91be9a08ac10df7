//! Host-wide outbound settings, the same for every provider: timeouts, the operator's resolve
//! overrides (`--resolve HOST:PORT=ADDRESS[:PORT]`), and the TLS client configuration (the system's
//! roots plus the operator's extra CA bundle).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Host-wide network settings (shared by all providers).
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Extra trusted CA certificates (DER), in addition to the system roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Skip the system roots (tests that must trust only their own CA).
    pub no_system_roots: bool,
    pub resolve: Vec<ResolveOverride>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub between_bytes_timeout: Duration,
    /// Bound of one upstream exchange, even when nobody waits for it any more.
    pub total_timeout: Duration,
    pub pool_idle_timeout: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            extra_roots: Vec::new(),
            no_system_roots: false,
            resolve: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(20),
            between_bytes_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

impl NetworkConfig {
    /// Add the certificates of a PEM bundle to the trusted roots.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<usize, NetError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(NetError::Pem)?;
        if certs.is_empty() {
            return Err(NetError::NoCertificates);
        }
        let added = certs.len();
        self.extra_roots.extend(certs);
        Ok(added)
    }
}

/// A network setting the operator gave is unusable.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("CA bundle: no CERTIFICATE blocks found")]
    NoCertificates,
    #[error("CA bundle: unreadable PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("CA bundle: {0}")]
    Root(#[source] rustls::Error),
    #[error("resolve override {entry:?}: want HOST:PORT=ADDRESS[:PORT]")]
    Resolve { entry: String },
    #[error("TLS setup: {0}")]
    Tls(#[source] rustls::Error),
}

/// `HOST:PORT=ADDRESS[:PORT]`: connections to HOST:PORT go to ADDRESS (an operator's choice, used as
/// is, private or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

impl FromStr for ResolveOverride {
    type Err = NetError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = || NetError::Resolve {
            entry: entry.to_string(),
        };
        let (from, to) = entry.split_once('=').ok_or_else(bad)?;
        let (host, port) = from.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        // Only a name or an IP literal can ever equal a request's host; anything else (`a]b`,
        // `x,y`) would be an override that silently never applies.
        let name = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if host.is_empty() || !(name || IpAddr::from_str(&host).is_ok()) {
            return Err(bad());
        }
        let addr = SocketAddr::from_str(to)
            .or_else(|_| {
                IpAddr::from_str(to.trim_start_matches('[').trim_end_matches(']'))
                    .map(|ip| SocketAddr::new(ip, port))
            })
            .map_err(|_| bad())?;
        Ok(ResolveOverride { host, port, addr })
    }
}

/// TLS client settings shared by every provider's pool.
pub(crate) fn tls_config(config: &NetworkConfig) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    if !config.no_system_roots {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate must not take the driver down.
            let _ = roots.add(cert);
        }
    }
    for cert in &config.extra_roots {
        roots.add(cert.clone()).map_err(NetError::Root)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(NetError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides_parse() {
        let o: ResolveOverride = "MyVault.vault.azure.net:443=127.0.0.1:8443"
            .parse()
            .unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.addr),
            (
                "myvault.vault.azure.net",
                443,
                "127.0.0.1:8443".parse().unwrap()
            )
        );
        let o: ResolveOverride = "169.254.169.254:80=127.0.0.1".parse().unwrap();
        assert_eq!(o.addr, "127.0.0.1:80".parse().unwrap());
        let o: ResolveOverride = "[::1]:443=[::1]:9443".parse().unwrap();
        assert_eq!(
            (o.host.as_str(), o.addr),
            ("::1", "[::1]:9443".parse().unwrap())
        );
        for bad in [
            "host=1.2.3.4",
            "host:x=1.2.3.4",
            "host:443",
            ":443=1.2.3.4",
            "h:443=nonsense",
            // Found by the `resolve_override` fuzz target: brackets or commas left in the host.
            "[::1],:443=[::1]:9443",
            "x].:443=127.0.0.1",
        ] {
            assert!(
                bad.parse::<ResolveOverride>()
                    .unwrap_err()
                    .to_string()
                    .contains(bad)
            );
        }
    }

    #[test]
    fn ca_bundle_errors_keep_their_text() {
        let mut config = NetworkConfig::default();
        assert_eq!(
            config.add_ca_pem(b"nothing here").unwrap_err().to_string(),
            "CA bundle: no CERTIFICATE blocks found"
        );
    }
}
