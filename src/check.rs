//! `mqbridge check`: the connection check of the managed services, run from the command line
//! (or as a deployment's smoke test). It connects to the MQTT broker with a probe client (its
//! own client id and a clean session), subscribes to each enabled route's filters and
//! unsubscribes again, reporting the broker's reason codes, and builds and checks every
//! connection, and reads each enabled downlink's source topic's metadata. The probe subscribes to the plain filter at QoS 0, not to the share group:
//! brokers apply the same authorization to both, and a member of the group, even for a
//! moment, could take messages meant for the bridge's consumers.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};

use crate::config::Config;
use crate::connectors::mqtt::Endpoint;

/// One line of the verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub ok: bool,
    /// What was checked: `mqtt`, `route "name" filter "a/#"`, `connection "name"`.
    pub item: String,
    pub detail: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark}  {}: {}", self.item, self.detail)
    }
}

const LIMIT: Duration = Duration::from_secs(10);

/// Checks the broker, every enabled route's filters and every connection.
pub async fn check(config: &Config) -> Vec<Verdict> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut verdicts = mqtt(config).await;
    let mut live = std::collections::BTreeMap::new();
    for (name, c) in &config.connections {
        let item = format!("connection \"{name}\" ({})", c.kind());
        let outcome = tokio::time::timeout(LIMIT, async {
            let connection = c.connect(name).await?;
            let detail = connection.health_check().await;
            live.insert(name.clone(), connection);
            detail
        })
        .await;
        verdicts.push(verdict(item, outcome));
    }
    for route in config.routes.iter().filter(|r| r.enabled) {
        let Some(connection) = live.get(&route.connection) else {
            continue;
        };
        let probe = tokio::time::timeout(LIMIT, connection.probe_route(&route.sink)).await;
        let outcome = match probe {
            Ok(None) => continue,
            Ok(Some(result)) => Ok(result),
            Err(e) => Err(e),
        };
        verdicts.push(verdict(format!("route \"{}\"", route.name), outcome));
    }
    for downlink in config.downlinks.iter().filter(|d| d.enabled) {
        let Some(connection) = live.get(&downlink.connection) else {
            continue;
        };
        let probe = tokio::time::timeout(LIMIT, connection.probe_topic(&downlink.topic)).await;
        let outcome = match probe {
            Ok(None) => continue,
            Ok(Some(result)) => Ok(result),
            Err(e) => Err(e),
        };
        verdicts.push(verdict(format!("downlink \"{}\"", downlink.name), outcome));
    }
    verdicts
}

fn verdict(
    item: String,
    outcome: Result<Result<String, crate::flow::BoxError>, tokio::time::error::Elapsed>,
) -> Verdict {
    let (ok, detail) = match outcome {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, format!("no answer within {LIMIT:?}")),
    };
    Verdict { ok, item, detail }
}

async fn mqtt(config: &Config) -> Vec<Verdict> {
    let fail = |detail: String| {
        vec![Verdict {
            ok: false,
            item: "mqtt".into(),
            detail,
        }]
    };
    let endpoint = match Endpoint::new(&config.mqtt) {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let id = format!(
        "{}-check-{}",
        config.mqtt.client_id_prefix,
        std::process::id()
    );
    let (client, mut events) = AsyncClient::new(endpoint.publisher_options(&id, 64), 64);
    let filters: Vec<(String, String)> = config
        .routes
        .iter()
        .filter(|r| r.enabled)
        .flat_map(|r| r.filters.iter().map(move |f| (r.name.clone(), f.clone())))
        .collect();
    let mut verdicts = Vec::new();
    let probe = async {
        verdicts.push(connected(&mut events, &endpoint).await?);
        for (route, filter) in &filters {
            verdicts.push(subscribed(&client, &mut events, route, filter).await?);
        }
        let _ = client.disconnect().await;
        // Until the DISCONNECT is written.
        while let Ok(event) = events.poll().await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
        Ok(())
    };
    match tokio::time::timeout(LIMIT + Duration::from_secs(5), probe).await {
        Ok(Ok(())) => verdicts,
        Ok(Err(e)) => {
            verdicts.extend(fail(e));
            verdicts
        }
        Err(_) => {
            verdicts.extend(fail(format!(
                "no answer from {} within 15 s",
                endpoint.address()
            )));
            verdicts
        }
    }
}

/// Waits for the broker's CONNACK.
async fn connected(events: &mut EventLoop, endpoint: &Endpoint) -> Result<Verdict, String> {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return Ok(Verdict {
                    ok: true,
                    item: "mqtt".into(),
                    detail: format!(
                        "{} accepts the bridge's credentials ({:?})",
                        endpoint.address(),
                        ack.code
                    ),
                })
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", endpoint.address())),
        }
    }
}

/// Subscribes to `filter` (and unsubscribes when granted): whether the broker grants it.
async fn subscribed(
    client: &AsyncClient,
    events: &mut EventLoop,
    route: &str,
    filter: &str,
) -> Result<Verdict, String> {
    let sub = Filter::new(filter.to_owned(), QoS::AtMostOnce);
    client
        .subscribe_many([sub])
        .await
        .map_err(|e| e.to_string())?;
    let code = loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::SubAck(ack))) => break ack.return_codes.first().cloned(),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    };
    let (ok, detail) = match code {
        Some(SubscribeReasonCode::Success(_)) => (true, "the broker grants it".to_owned()),
        Some(code) => (false, format!("the broker refuses it: {code:?}")),
        None => (false, "no reason code in the SUBACK".to_owned()),
    };
    if ok {
        let _ = client.unsubscribe(filter.to_owned()).await;
    }
    Ok(Verdict {
        ok,
        item: format!("route \"{route}\" filter \"{filter}\""),
        detail,
    })
}
