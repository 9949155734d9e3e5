//! What `mqbridge check` and the running connection checks ask of a broker, each with a probe
//! client of its own (its own client id and a clean session): whether it accepts the bridge's
//! credentials, and whether it grants each of a route's filters. The probe subscribes to the
//! plain filter at QoS 0, not to the share group, and unsubscribes again: brokers apply the same
//! authorization to both, and a member of the group, even for a moment, could take messages
//! meant for the bridge's consumers.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};

use super::options::Endpoint;
use crate::flow::BoxError;

/// How long a probe may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Connects and disconnects: whether the broker accepts the bridge's credentials.
pub async fn connect(endpoint: &Endpoint) -> Result<String, BoxError> {
    let (client, mut events) = client(endpoint);
    let outcome = tokio::time::timeout(LIMIT, async {
        let detail = connected(&mut events, endpoint).await?;
        disconnect(&client, &mut events).await;
        Ok::<_, String>(detail)
    })
    .await;
    match outcome {
        Ok(result) => Ok(result?),
        Err(_) => Err(no_answer(endpoint).into()),
    }
}

/// Subscribes to each of `filters` (and unsubscribes when granted): what the broker says of
/// each, as `filter "a/#"` and its verdict.
pub async fn filters(
    endpoint: &Endpoint,
    filters: &[String],
) -> Vec<(String, Result<String, BoxError>)> {
    let (client, mut events) = client(endpoint);
    let mut verdicts = Vec::new();
    let probe = async {
        connected(&mut events, endpoint).await?;
        for filter in filters {
            let verdict = subscribed(&client, &mut events, filter).await?;
            verdicts.push((format!("filter \"{filter}\""), verdict));
        }
        disconnect(&client, &mut events).await;
        Ok::<_, String>(())
    };
    let failure = match tokio::time::timeout(LIMIT + Duration::from_secs(5), probe).await {
        Ok(Ok(())) => return verdicts,
        Ok(Err(e)) => e,
        Err(_) => no_answer(endpoint),
    };
    let done = verdicts.len();
    let rest = filters[done..].iter().map(|f| format!("filter \"{f}\""));
    verdicts.extend(rest.map(|item| (item, Err(failure.clone().into()))));
    verdicts
}

fn client(endpoint: &Endpoint) -> (AsyncClient, EventLoop) {
    let prefix = &endpoint.config().client_id_prefix;
    let id = format!("{prefix}-check-{}", std::process::id());
    AsyncClient::new(endpoint.publisher_options(&id, 64), 64)
}

fn no_answer(endpoint: &Endpoint) -> String {
    format!("no answer from {} within {LIMIT:?}", endpoint.address())
}

/// Waits for the broker's CONNACK.
async fn connected(events: &mut EventLoop, endpoint: &Endpoint) -> Result<String, String> {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return Ok(format!(
                    "{} accepts the bridge's credentials ({:?})",
                    endpoint.address(),
                    ack.code
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", endpoint.address())),
        }
    }
}

/// Until the DISCONNECT is written.
async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    let _ = client.disconnect().await;
    while let Ok(event) = events.poll().await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
}

/// Subscribes to `filter` (and unsubscribes when granted): whether the broker grants it. The
/// outer error is the connection's, the inner the broker's refusal.
async fn subscribed(
    client: &AsyncClient,
    events: &mut EventLoop,
    filter: &str,
) -> Result<Result<String, BoxError>, String> {
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
    Ok(match code {
        Some(SubscribeReasonCode::Success(_)) => {
            let _ = client.unsubscribe(filter.to_owned()).await;
            Ok("the broker grants it".to_owned())
        }
        Some(code) => Err(format!("the broker refuses it: {code:?}").into()),
        None => Err("no reason code in the SUBACK".into()),
    })
}
