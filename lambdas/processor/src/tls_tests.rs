//! `verify-full` against a fake PostgreSQL server: the client asks for TLS, refuses a
//! server that declines it, trusts only the bundled CAs, and checks the host name. The
//! server records what reached it, so "no password in the clear" is observed, not assumed.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// PostgreSQL's SSLRequest code (1234 << 16 | 5679).
const SSL_REQUEST: u32 = 80_877_103;

enum Answer {
    Tls(Arc<rustls::ServerConfig>),
    Decline,
}

#[derive(Debug, Default)]
struct Seen {
    ssl_requested: bool,
    handshake_done: bool,
    /// The user of the StartupMessage received inside TLS.
    startup_user: Option<String>,
    /// Bytes received after declining TLS (a password would be among them).
    plaintext_after_decline: usize,
}

async fn fake_server(answer: Answer) -> (u16, tokio::task::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut seen = Seen::default();
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        conn.read_exact(&mut request).await.unwrap();
        seen.ssl_requested =
            request[..4] == 8u32.to_be_bytes() && request[4..] == SSL_REQUEST.to_be_bytes();
        match answer {
            Answer::Decline => {
                conn.write_all(b"N").await.unwrap();
                let mut rest = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest));
                let _ = read.await;
                seen.plaintext_after_decline = rest.len();
            }
            Answer::Tls(config) => {
                conn.write_all(b"S").await.unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                if let Ok(mut tls) = acceptor.accept(conn).await {
                    seen.handshake_done = true;
                    let mut len = [0u8; 4];
                    if tls.read_exact(&mut len).await.is_ok() {
                        let mut body =
                            vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                        if tls.read_exact(&mut body).await.is_ok() {
                            // protocol version, then key\0value\0 pairs.
                            let text = String::from_utf8_lossy(&body[4..]).into_owned();
                            let mut fields = text.split('\0');
                            while let Some(k) = fields.next() {
                                let v = fields.next().unwrap_or_default();
                                if k == "user" {
                                    seen.startup_user = Some(v.to_string());
                                }
                            }
                        }
                    }
                }
            }
        }
        seen
    });
    (port, task)
}

fn server_config(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> Answer {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Answer::Tls(Arc::new(config))
}

/// A test CA (PEM) and a server certificate it issued for `host`.
fn ca_and_server(host: &str) -> (String, Answer) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), server_config(vec![leaf.der().clone()], &key))
}

async fn connect_to(port: u16, tls: Option<rustls::ClientConfig>) -> Result<Client, DbError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::Ipv4Addr::LOCALHOST.into())
        .port(port)
        .dbname("payments")
        .user("payments_app")
        .password("not-in-the-clear")
        .connect_timeout(Duration::from_secs(5));
    open(config, tls).await
}

#[tokio::test]
async fn the_rds_bundle_refuses_a_certificate_it_did_not_issue() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (port, server) = fake_server(server_config(vec![cert.der().clone()], &key)).await;
    let err = connect_to(port, Some(tls_config().unwrap()))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err:?}");
    let seen = server.await.unwrap();
    assert!(seen.ssl_requested, "{seen:?}");
    assert_eq!(seen.startup_user, None, "{seen:?}");
}

#[tokio::test]
async fn a_server_that_declines_tls_is_never_sent_the_credentials() {
    let (port, server) = fake_server(Answer::Decline).await;
    let err = connect_to(port, Some(tls_config().unwrap()))
        .await
        .expect_err("refused");
    assert!(matches!(err, DbError::Transient(_)), "{err:?}");
    let seen = server.await.unwrap();
    assert!(seen.ssl_requested, "{seen:?}");
    assert_eq!(seen.plaintext_after_decline, 0, "{seen:?}");
}

#[tokio::test]
async fn a_trusted_ca_and_the_right_host_name_complete_the_handshake() {
    let (ca, server) = ca_and_server("localhost");
    let (port, server) = fake_server(server).await;
    let tls = tls_config_trusting(ca.as_bytes()).unwrap();
    // The fake server hangs up after the startup message, so the connect itself fails.
    let _ = connect_to(port, Some(tls)).await;
    let seen = server.await.unwrap();
    assert!(seen.handshake_done, "{seen:?}");
    assert_eq!(
        seen.startup_user.as_deref(),
        Some("payments_app"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let (ca, server) = ca_and_server("db.elsewhere.internal");
    let (port, server) = fake_server(server).await;
    let tls = tls_config_trusting(ca.as_bytes()).unwrap();
    let err = connect_to(port, Some(tls)).await.expect_err("refused");
    assert!(
        err.to_string().contains("certificate not valid for name"),
        "{err:?}"
    );
    let seen = server.await.unwrap();
    assert_eq!(seen.startup_user, None, "{seen:?}");
}
