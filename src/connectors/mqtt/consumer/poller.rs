//! A consumer connection's poll task: it drives rumqttc's event loop, hands each PUBLISH to the
//! routes its identifiers name, answers SUBACK and UNSUBACK for the table, and connects again
//! with a backoff. It only moves packets; it never waits on a route.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;

use super::table::{ack_now, lock, subscribe, unsubscribe_filters, Op, Table};
use super::{ConnectionSpec, Subscription};
use crate::connectors::mqtt::acker::{AckToken, Pending, Shared};
use crate::connectors::mqtt::convert;
use crate::events;
use crate::flow::{budget, ConsumerStatus, Delivery};
use crate::message::Message;

/// What the poll task works with: the connection's spec, client, window and table.
pub(super) struct Poller {
    pub(super) spec: ConnectionSpec,
    pub(super) client: AsyncClient,
    pub(super) shared: Arc<Shared>,
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) address: String,
    /// The connection's own status, for events while it carries no route.
    pub(super) status: Arc<ConsumerStatus>,
}

impl Poller {
    pub(super) async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        let mut broker_reason = String::new();
        let mut connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(100);
                    connected = true;
                    let identifiers = ack
                        .properties
                        .as_ref()
                        .and_then(|p| p.subscription_identifiers_available);
                    self.on_connack(ack.session_present, identifiers != Some(0));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    self.on_suback(ack.pkid, &ack.return_codes)
                }
                Ok(Event::Incoming(Packet::UnsubAck(ack))) => self.on_unsuback(ack.pkid),
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    // Reported with the connection error that follows.
                    broker_reason = format!(" after the broker's DISCONNECT ({:?})", d.reason_code);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    if self.shared.reconnecting.swap(false, Ordering::AcqRel)
                        && !self.shared.closing.load(Ordering::Acquire)
                    {
                        // Asked to connect again: the broker closes, and the loop reconnects.
                        continue;
                    }
                    self.each(|route, status| {
                        events::ConsumerStopped { route, status }.emit();
                    });
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.connection_lost(&mut eventloop);
                    if self.shared.closing.load(Ordering::Acquire) {
                        self.each(|route, status| {
                            events::ConsumerStopped { route, status }.emit();
                        });
                        break;
                    }
                    let reason = std::mem::take(&mut broker_reason);
                    let error = format!("{e}{reason} (broker {})", self.address);
                    let was = std::mem::take(&mut connected);
                    self.each(|route, status| match was {
                        true => events::ConsumerDisconnected {
                            route,
                            status,
                            error: &error,
                        }
                        .emit(),
                        false => events::ConnectFailed {
                            route,
                            status,
                            error: &error,
                        }
                        .emit(),
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Calls `f` with each route the connection carries (or with the connection itself when
    /// it carries none).
    pub(super) fn each(&self, mut f: impl FnMut(&str, &ConsumerStatus)) {
        if !self.spec.counted {
            return;
        }
        let subs: Vec<Arc<Subscription>> = lock(&self.table)
            .entries
            .values()
            .map(|e| e.sub.clone())
            .collect();
        if subs.is_empty() {
            f(&self.spec.label, &self.status);
        }
        for sub in subs {
            f(&sub.route, &sub.status);
        }
    }

    /// A new epoch begins: acks of the old one are refused from now on, any that slipped into
    /// rumqttc's queue since it cleaned up are purged (`clean` drops queued PUBACKs), and so are
    /// events rumqttc read on the old connection but has not handed out yet (`clean` keeps
    /// them: a PUBLISH among them would otherwise be taken as the new connection's).
    pub(super) fn connection_lost(&self, eventloop: &mut EventLoop) {
        let mut epoch = self.shared.epoch();
        *epoch += 1;
        // What routes gave up comes again on the next connection.
        self.shared.stranded.store(0, Ordering::Release);
        eventloop.clean();
        eventloop.state.events.clear();
        let mut table = lock(&self.table);
        table.connected = false;
        table.pending.clear();
        for entry in table.entries.values_mut() {
            entry.granted = false;
        }
    }

    pub(super) fn on_publish(&self, publish: Publish) {
        if self.shared.closing.load(Ordering::Acquire) {
            return; // not acknowledged: the broker redelivers it to the group
        }
        let mut table = lock(&self.table);
        let mut targets: Vec<u32> = match self.spec.shared {
            false => table.entries.keys().copied().take(1).collect(),
            true => {
                let ids = publish.properties.as_ref();
                let ids = ids.map(|p| &p.subscription_identifiers[..]).unwrap_or(&[]);
                ids.iter().map(|&id| id as u32).collect()
            }
        };
        targets.sort_unstable();
        targets.dedup();
        // The routes it goes to: those the connection carries, and those that have not joined
        // yet (it waits for them): one that holds the identifier, or, until the connection
        // settled, any.
        let expected = self.spec.expected.as_deref();
        let settled = table.settled;
        let known: Vec<u32> = targets
            .iter()
            .copied()
            .filter(|id| {
                table.entries.contains_key(id)
                    || !settled
                    || expected.is_some_and(|e| e.expects(*id))
            })
            .collect();
        if known.is_empty() {
            self.unrouted(&mut table, &publish, &targets);
            return;
        }
        let (payload, topic) = (publish.payload.len(), publish.topic.len());
        let slot = self.shared.hold(payload, budget::cost(payload, topic));
        let pending = Pending {
            qos: publish.qos,
            packet_id: publish.pkid,
            epoch: *self.shared.epoch(),
            _slot: slot,
        };
        let msg = convert::message(&publish, &self.spec.publisher);
        let mut tokens = match known.len() {
            1 => vec![AckToken::whole(pending)],
            n => AckToken::joint(pending, n),
        };
        let mut strays = Vec::new();
        for id in known {
            let token = tokens.pop().expect("a token per route");
            let d = delivery(msg.clone(), token);
            match table.entries.get_mut(&id) {
                Some(entry) => entry.hand(d),
                None => {
                    let waiting = table.unclaimed.entry(id).or_default();
                    if waiting.is_empty() && expected.is_some_and(|e| e.expects(id)) {
                        strays.push(id);
                    }
                    waiting.push(d);
                }
            }
        }
        drop(table);
        if let Some(stray) = &self.spec.stray {
            for id in strays {
                stray(id);
            }
        }
    }

    /// A PUBLISH no route this connection carries takes. With identifiers of routes that are
    /// gone (a route removed while the bridge was away leaves its subscription in the session),
    /// it is acknowledged, counted and reported. Without any on a shared connection, the broker
    /// stopped sending them: it stays unacknowledged, for a connection of the route's own.
    pub(super) fn unrouted(&self, table: &mut Table, publish: &Publish, ids: &[u32]) {
        if ids.is_empty() {
            events::UnroutedMessage {
                connection: &self.spec.client_id,
                topic: &String::from_utf8_lossy(&publish.topic),
                identifiers: ids,
                acknowledged: false,
            }
            .emit();
            return;
        }
        let first = ids.iter().any(|id| table.unknown.insert(*id));
        if first {
            events::UnroutedMessage {
                connection: &self.spec.client_id,
                topic: &String::from_utf8_lossy(&publish.topic),
                identifiers: ids,
                acknowledged: true,
            }
            .emit();
        } else {
            events::UnroutedMessage::count();
        }
        if publish.qos != QoS::AtMostOnce {
            let _epoch = self.shared.epoch();
            let _ = self.client.try_ack(publish);
        }
    }

    pub(super) fn on_connack(&self, session_present: bool, identifiers: bool) {
        if let Some(tell) = &self.spec.identifiers {
            tell.send_replace(Some(identifiers));
        }
        if self.shared.closing.load(Ordering::Acquire) {
            return; // a DISCONNECT is on its way: nothing may follow it
        }
        let epoch = *self.shared.epoch();
        let mut table = lock(&self.table);
        table.connected = true;
        table.session_present = session_present;
        let ids: Vec<(u32, bool, Arc<Subscription>)> = table
            .entries
            .iter()
            .map(|(id, e)| (*id, e.wanted, e.sub.clone()))
            .collect();
        if ids.is_empty() && self.spec.counted {
            events::ConsumerConnected {
                route: &self.spec.label,
                status: &self.status,
                session_present,
                epoch,
            }
            .emit();
        }
        // Subscribing again on a resumed session is harmless and repairs a lost one; a
        // subscription withdrawn while away is withdrawn again, the session may still hold it.
        // A new session holds none: there is nothing to withdraw.
        let mut off = Vec::new();
        for (id, wanted, sub) in ids {
            if self.spec.counted {
                events::ConsumerConnected {
                    route: &sub.route,
                    status: &sub.status,
                    session_present,
                    epoch,
                }
                .emit();
            }
            match wanted {
                true => subscribe(&self.client, self.spec.shared, &mut table, id),
                false if !session_present => off.push(id),
                false => {
                    let filters = sub.shared_filters().collect();
                    unsubscribe_filters(&self.client, &mut table, id, filters);
                }
            }
        }
        drop(table);
        for id in off {
            self.withdrawn(id);
        }
    }

    /// The broker's answer to a SUBSCRIBE: every filter granted, or the refusals.
    pub(super) fn on_suback(&self, pkid: u16, codes: &[SubscribeReasonCode]) {
        let mut table = lock(&self.table);
        let Some((id, Op::Subscribe)) = table.pending.remove(&pkid) else {
            return;
        };
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        let sub = entry.sub.clone();
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (code, filter) in codes.iter().zip(&sub.filters) {
            match code {
                SubscribeReasonCode::Success(_) => granted.push(filter.as_str()),
                code => refused.push(format!(
                    "broker refused $share/{}/{filter}: {code:?}",
                    sub.share_group
                )),
            }
        }
        let complete = refused.is_empty() && granted.len() == sub.filters.len();
        // The answer to an earlier SUBSCRIBE, or to one sent before a withdrawal, grants
        // nothing: a move waiting on this connection would take it for the current one.
        if entry.wanted && entry.subscribing == Some(pkid) {
            entry.granted = complete;
        }
        drop(table);
        if !self.spec.counted {
            return;
        }
        let (route, status) = (&*sub.route, &*sub.status);
        events::Subscribed {
            route,
            status,
            granted: &granted,
            complete,
        }
        .emit();
        for error in &refused {
            events::SubscribeFailed {
                route,
                status,
                error,
            }
            .emit();
        }
    }

    /// The broker confirmed an UNSUBSCRIBE: nothing more arrives for it. An entry being
    /// removed goes; what it held for a route that is gone is acknowledged, counted.
    pub(super) fn on_unsuback(&self, pkid: u16) {
        let mut table = lock(&self.table);
        let Some((id, Op::Unsubscribe)) = table.pending.remove(&pkid) else {
            return;
        };
        drop(table);
        self.withdrawn(id);
    }

    /// Subscription `id` is off the broker: an entry to be removed goes, and what it held for
    /// its route, which is gone, is acknowledged without delivery (counted).
    fn withdrawn(&self, id: u32) {
        let mut table = lock(&self.table);
        let still_pending = table.pending.values().any(|p| p.0 == id);
        let remove = table
            .entries
            .get(&id)
            .is_some_and(|e| e.remove && !e.wanted && !still_pending);
        if !remove {
            return;
        }
        let entry = table.entries.remove(&id).expect("checked");
        drop(table);
        if !entry.held.is_empty() {
            events::HeldForRemovedRoute {
                route: &entry.sub.route,
                count: entry.held.len(),
            }
            .emit();
        }
        let epoch = self.shared.epoch();
        for d in entry.held {
            ack_now(&self.client, d.token, *epoch);
        }
    }
}

/// A delivery whose lane and order key its route's entry sets (`Entry::hand`).
pub(super) fn delivery(msg: Message, token: AckToken) -> Delivery<AckToken> {
    Delivery {
        lane: 0,
        key: 0,
        msg,
        token,
    }
}
