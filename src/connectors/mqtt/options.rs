//! Turns a broker's settings into rumqttc options for one client: persistent session, manual acks, the
//! bridge's packet-size limit, TCP_NODELAY and TLS (rustls, with the ring provider).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use rustls::ClientConfig;

use super::config::MqttConfig;
use super::pool::Pools;
use crate::settings::Secret;

/// Outgoing QoS 1 publishes a consumer may have in flight: none are sent, but rumqttc numbers
/// SUBSCRIBE packets from the same range.
const CONSUMER_OUTGOING_INFLIGHT: u16 = 16;

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("url \"{0}\": {1}")]
    Url(String, String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("password_file: {0}")]
    Password(String),
}

/// What a client needs to connect; cheap to clone per consumer.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    /// The password, read from `password_file` when it is there.
    password: Option<Secret>,
    config: MqttConfig,
    /// The consumer connections routes share on this broker.
    pools: Arc<Pools>,
}

impl Endpoint {
    pub fn new(config: &MqttConfig) -> Result<Self, OptionsError> {
        let url = url::Url::parse(&config.url)
            .map_err(|e| OptionsError::Url(config.url.clone(), e.to_string()))?;
        let secure = matches!(url.scheme(), "mqtts" | "ssl");
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port().unwrap_or(if secure { 8883 } else { 1883 });
        let tls = match secure {
            true => {
                let tls = config.tls.clone().unwrap_or_default();
                let client = tls.cert_file.as_deref().zip(tls.key_file.as_deref());
                let tls = crate::tls::client_config(tls.ca_file.as_deref(), client)
                    .map_err(|e| OptionsError::Tls(e.to_string()))?;
                Some(Arc::new(tls))
            }
            false => None,
        };
        let password = Secret::inline_or_file(&config.password, &config.password_file)
            .map_err(OptionsError::Password)?;
        Ok(Endpoint {
            host,
            port,
            tls,
            password,
            config: config.clone(),
            pools: Arc::default(),
        })
    }

    /// Options for a consumer: persistent session under a stable id, acks sent by the bridge.
    pub fn consumer_options(&self, client_id: &str) -> MqttOptions {
        let mut o = self.base(client_id);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(self.config.session_expiry.as_secs() as u32));
        o.set_receive_maximum(Some(self.config.receive_maximum));
        o.set_manual_acks(true);
        // A consumer publishes nothing. rumqttc sizes its table of outgoing publishes by this
        // limit, and its default (65,535 slots, about 13 MiB) would be most of the bridge's
        // memory per consumer.
        o.set_outgoing_inflight_upper_limit(CONSUMER_OUTGOING_INFLIGHT);
        o
    }

    /// A publisher's options, with at most `inflight` PUBLISHes unacknowledged (fewer when
    /// the broker's Receive Maximum says so).
    pub fn publisher_options(&self, client_id: &str, inflight: u16) -> MqttOptions {
        let mut o = self.base(client_id);
        // rumqttc keeps a slot per packet id up to this limit, touched at connect: its
        // default of 65,535 costs about 14 MiB per connection. (Its ids wrap at the broker's
        // limit even after a reconnect lowered it: `vendor/rumqttc/PATCH.md`.)
        o.set_outgoing_inflight_upper_limit(inflight.max(1));
        o.set_clean_start(true);
        o
    }

    fn base(&self, client_id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, &self.host, self.port);
        o.set_keep_alive(self.config.keep_alive);
        // Also raises rumqttc's limit on incoming packets from its 10 KiB default.
        o.set_max_packet_size(Some(self.config.max_packet_size));
        o.set_connection_timeout(10);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(10);
        o.set_network_options(net);
        if let Some(user) = &self.config.username {
            let password = self.password.as_ref().map_or("", Secret::expose);
            o.set_credentials(user, password);
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        o
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn keep_alive(&self) -> Duration {
        self.config.keep_alive
    }

    /// The consumer connections routes share on this broker.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Whether `other` is this endpoint (a clone of it), not one made anew from settings.
    pub fn same(&self, other: &Endpoint) -> bool {
        Arc::ptr_eq(&self.pools, &other.pools)
    }

    /// The settings it was made from.
    pub fn config(&self) -> &MqttConfig {
        &self.config
    }
}
