//! One webhook request: a `POST` over a fresh connection (HTTP/1.1, TLS for `https://`), with
//! one deadline for everything. Redirects are not followed (a 3xx is a failure, so an endpoint
//! cannot send our signed events elsewhere), and the response body is never read.
//!
//! Endpoints created through the server API connect only to public addresses, or to
//! `webhook.allowed_ranges`: the host is resolved for every request and a refused address is
//! never connected to, so a name that resolves (or is re-pointed) to `127.0.0.1`, a private
//! network or the cloud metadata service at `169.254.169.254` gets nothing. The address rules
//! are the TURN relay's (`turn::peer`). `[[webhooks]]` endpoints are the operator's own and are
//! not checked.

use super::endpoint::{Endpoint, Source};
use axum::http::{Request, header};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use turn::peer::{IpRange, PeerPolicy};

/// Sends webhook requests; see the module docs.
pub struct Client {
    timeout: Duration,
    /// Which addresses endpoints created through the API may reach.
    policy: PeerPolicy,
    /// Built on the first `https://` request: system roots from `SSL_CERT_FILE` or the Debian
    /// bundle.
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl Client {
    /// A client whose requests take at most `timeout`; API endpoints may reach public
    /// addresses and `allowed` (`webhook.allowed_ranges`, validated by the config).
    pub fn new(timeout: Duration, allowed: &[String]) -> Self {
        let allowed: Vec<IpRange> = allowed.iter().filter_map(|r| r.parse().ok()).collect();
        Self {
            timeout,
            policy: PeerPolicy::new(&allowed, &[], &[]),
            tls: OnceLock::new(),
        }
    }

    /// Refuses a URL whose host is an address endpoints created through the API may not reach
    /// (a host name is checked when it is resolved, at every request).
    pub fn check_address(&self, url: &str) -> Result<(), String> {
        let Ok(uri) = url.parse::<axum::http::Uri>() else {
            return Ok(());
        };
        let Some(host) = uri.host() else {
            return Ok(());
        };
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.allowed(ip),
            Err(_) => Ok(()),
        }
    }

    fn allowed(&self, ip: IpAddr) -> Result<(), String> {
        self.policy.check(ip).map_err(|refusal| {
            format!(
                "{ip} is not a public address ({}); allow its range with webhook.allowed_ranges",
                refusal.label()
            )
        })
    }

    /// A connection to `host`: any address it resolves to for a configured endpoint, the first
    /// allowed one for an endpoint created through the API.
    async fn connect(&self, source: Source, host: &str, port: u16) -> Result<TcpStream, String> {
        if source == Source::Config {
            return TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("connect: {e}"));
        }
        let mut refused = None;
        for addr in tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolve {host}: {e}"))?
        {
            match self.allowed(addr.ip()) {
                Ok(()) => {
                    return TcpStream::connect(addr)
                        .await
                        .map_err(|e| format!("connect: {e}"));
                }
                Err(why) => refused = Some(why),
            }
        }
        Err(refused.map_or_else(
            || format!("{host} resolves to no address"),
            |why| format!("refused: {host} resolves only to addresses that are not allowed: {why}"),
        ))
    }

    /// POSTs `body` with `headers` to the endpoint; the response's status, or why there was
    /// none.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, String> {
        let uri = &endpoint.uri;
        let host = uri.host().ok_or("no host")?.to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let mut request = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "Chorus-Webhooks/1")
            .header(header::CONNECTION, "close");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let attempt = async {
            // Brackets of an IPv6 literal are not part of the address.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = self.connect(endpoint.source, bare, port).await?;
            let _ = tcp.set_nodelay(true);
            if https {
                let tls = self.tls()?;
                let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                    .map_err(|e| format!("TLS name: {e}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                exchange(stream, request).await
            } else {
                exchange(tcp, request).await
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no response within {:?}", self.timeout)),
        }
    }

    fn tls(&self) -> Result<tokio_rustls::TlsConnector, String> {
        self.tls.get_or_init(tls_connector).clone()
    }
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await;
    driver.abort();
    Ok(response
        .map_err(|e| format!("HTTP: {e}"))?
        .status()
        .as_u16())
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let file = std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&file).map_err(|e| format!("CA bundle {file}: {e}"))?;
    for cert in certs.flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("CA bundle {file} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
