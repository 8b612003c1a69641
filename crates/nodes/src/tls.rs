//! TLS in transit: the emulator's own certificate authority and the certificates it issues
//! to nodes and endpoint proxies.
//!
//! The CA is made once per state directory (`<state dir>/tls/ca.pem` and `ca.key`, the key
//! readable by the owner only) and reused at every start, so a client that trusts it once
//! keeps trusting the emulator. Node certificates are issued afresh at every node start:
//! they are cheap (ECDSA P-256) and their names (the node's address, `127.0.0.1`,
//! `localhost`, and the advertised host if any) are all a client may dial.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::NodeError;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
/// The files a TLS node is started with, in its own directory.
pub const NODE_CERT_FILE: &str = "tls.crt";
pub const NODE_KEY_FILE: &str = "tls.key";
pub const NODE_CA_FILE: &str = "ca.crt";

const CA_NAME: &str = "ElastiCache Local CA";

/// The emulator's certificate authority.
pub struct CertificateAuthority {
    /// The CA certificate as first written: what clients trust.
    pem: String,
    key: KeyPair,
    /// The CA re-derived from its key and name, for signing (same subject, same key).
    issuer: Certificate,
    /// The advertised host (`--advertise-host`), which every certificate names too.
    advertised: Option<SanType>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").finish_non_exhaustive()
    }
}

fn tls_error(error: impl std::fmt::Display) -> NodeError {
    NodeError::Io(std::io::Error::other(format!("TLS certificate: {error}")))
}

fn ca_params() -> Result<CertificateParams, NodeError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, "elasticache-local");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    // Long-lived: a local CA that expired would break every client that pinned it.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// Writes `contents` readable by the owner only (keys, and configs holding passwords).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An existing file keeps its old mode through open(2): tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)
}

impl CertificateAuthority {
    /// Loads the CA kept in `dir`, or creates it there the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, NodeError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        if let (Ok(pem), Ok(key_pem)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
            let key = KeyPair::from_pem(&key_pem).map_err(tls_error)?;
            let issuer = ca_params()?.self_signed(&key).map_err(tls_error)?;
            return Ok(Self { pem, key, issuer, advertised: None });
        }
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate().map_err(tls_error)?;
        let issuer = ca_params()?.self_signed(&key).map_err(tls_error)?;
        let pem = issuer.pem();
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, &pem)?;
        tracing::info!(path = %cert_path.display(), "created the TLS certificate authority");
        Ok(Self { pem, key, issuer, advertised: None })
    }

    /// Every certificate issued from now on names `host` too (an address or a DNS name),
    /// so that clients elsewhere can verify the host they were told of.
    pub fn naming(mut self, host: &str) -> Self {
        self.advertised = Some(match host.parse::<Ipv4Addr>() {
            Ok(ip) => SanType::IpAddress(IpAddr::V4(ip)),
            Err(_) => match host.to_string().try_into() {
                Ok(name) => SanType::DnsName(name),
                Err(_) => return self,
            },
        });
        self
    }

    /// The CA certificate (PEM), for clients to verify against.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `address` (plus `127.0.0.1`, `localhost` and the advertised
    /// host): PEM certificate and PEM key.
    pub fn issue(&self, address: Ipv4Addr) -> Result<(String, String, Vec<u8>, Vec<u8>), NodeError> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls_error)?;
        let ips = [address, Ipv4Addr::LOCALHOST].map(|ip| SanType::IpAddress(IpAddr::V4(ip)));
        for san in ips.into_iter().chain(self.advertised.clone()) {
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "elasticache-local node");
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        // Nodes are servers to clients and clients of each other (replication, cluster bus).
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key).map_err(tls_error)?;
        Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec(), key.serialize_der()))
    }

    /// Writes a fresh certificate for a node at `address` into its directory and returns
    /// the `redis.conf` directives that point at it.
    pub fn write_node_files(&self, dir: &Path, address: Ipv4Addr) -> Result<NodeTlsFiles, NodeError> {
        std::fs::create_dir_all(dir)?;
        let (cert, key, _, _) = self.issue(address)?;
        let files =
            NodeTlsFiles { cert: dir.join(NODE_CERT_FILE), key: dir.join(NODE_KEY_FILE), ca: dir.join(NODE_CA_FILE) };
        std::fs::write(&files.cert, cert)?;
        write_private(&files.key, key.as_bytes())?;
        std::fs::write(&files.ca, &self.pem)?;
        Ok(files)
    }

    /// A TLS server configuration for an endpoint proxy that terminates TLS itself
    /// (transit encryption mode `preferred`, where the nodes behind it speak plaintext).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, NodeError> {
        let (_, _, cert_der, key_der) = self.issue(Ipv4Addr::LOCALHOST)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into());
        let chain = vec![rustls::pki_types::CertificateDer::from(cert_der)];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_error)?;
        Ok(Arc::new(config))
    }

    /// A TLS client configuration that trusts this CA only: the runtime's own way into TLS
    /// memcached nodes (probes, the configuration endpoint's proxy).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, NodeError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(self.issuer.der().to_vec())).map_err(tls_error)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// A TLS session over `stream` to the node at `address`, verified with `config`.
pub async fn connect(
    config: &Arc<rustls::ClientConfig>,
    address: Ipv4Addr,
    stream: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(address).into());
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await
}

/// Where a node's certificate, key and CA certificate are.
#[derive(Clone, Debug)]
pub struct NodeTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let second = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.pem(), second.pem());
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        // A certificate issued by the reloaded CA verifies against the stored CA certificate.
        let (_, _, der, _) = second.issue(Ipv4Addr::new(127, 0, 0, 2)).unwrap();
        assert!(verifies(&first, der.clone(), "127.0.0.2"));
        assert!(!verifies(&first, der, "cache.test"));
    }

    #[test]
    fn certificates_name_the_advertised_host() {
        let dir = tempfile::tempdir().unwrap();
        let by_name = CertificateAuthority::load_or_create(dir.path()).unwrap().naming("cache.test");
        let (_, _, der, _) = by_name.issue(Ipv4Addr::LOCALHOST).unwrap();
        assert!(verifies(&by_name, der.clone(), "cache.test") && verifies(&by_name, der, "127.0.0.1"));
        let by_address = CertificateAuthority::load_or_create(dir.path()).unwrap().naming("10.9.0.1");
        let (_, _, der, _) = by_address.issue(Ipv4Addr::LOCALHOST).unwrap();
        assert!(verifies(&by_address, der, "10.9.0.1"));
    }

    /// Whether `cert` verifies for `name` against `ca`'s certificate.
    fn verifies(ca: &CertificateAuthority, cert: Vec<u8>, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(ca.issuer.der().to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_server_cert(&cert.into(), &[], &name, &[], now).is_ok()
    }
}
