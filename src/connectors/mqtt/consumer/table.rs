//! The routes a consumer connection carries (entries by subscription identifier), its
//! numbered SUBSCRIBE and UNSUBSCRIBE packets, and what waits for a route: held between two of
//! its runs, or unclaimed under an identifier whose route has not joined yet.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rumqttc::v5::mqttbytes::v5::{Filter, Publish, Subscribe, SubscribeProperties, Unsubscribe};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Request};
use tokio::sync::mpsc;

use super::{Deliveries, Subscription};
use crate::connectors::mqtt::acker::{AckToken, Shared};
use crate::connectors::mqtt::pool::Identifiers;
use crate::events;
use crate::flow::Delivery;

/// Packet ids the bridge gives its SUBSCRIBE and UNSUBSCRIBE packets: above the consumer's
/// outgoing in-flight limit, where rumqttc's own ids never reach (`vendor/rumqttc/PATCH.md`).
const FIRST_PACKET_ID: u16 = 1024;

/// The routes a connection carries.
pub(super) struct Table {
    pub(super) entries: HashMap<u32, Entry>,
    /// SUBSCRIBE and UNSUBSCRIBE packets sent and not yet answered.
    pub(super) pending: HashMap<u16, (u32, Op)>,
    pub(super) next_packet_id: u16,
    pub(super) connected: bool,
    /// Identifiers no route holds that PUBLISHes named, each reported once.
    pub(super) unknown: HashSet<u32>,
    /// What arrived under an identifier before its route joined the connection.
    pub(super) unclaimed: HashMap<u32, Vec<Delivery<AckToken>>>,
    /// The last CONNACK said the broker had the session.
    pub(super) session_present: bool,
    /// `GRACE` has passed since the connection started: every route configured then has
    /// claimed its identifier, and what arrives under one nobody holds is acknowledged.
    pub(super) settled: bool,
    /// The last turn given to an entry.
    pub(super) turns: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Subscribe,
    Unsubscribe,
}

pub(super) struct Entry {
    pub(super) sub: Arc<Subscription>,
    /// The route's acknowledgement lane this connection is.
    pub(super) lane: usize,
    /// The route's pipeline; none between two runs of the route.
    pub(super) tx: Option<Deliveries>,
    /// What arrived while there was no pipeline: handed to the next.
    pub(super) held: Vec<Delivery<AckToken>>,
    /// The subscription is wanted on the broker; false once withdrawn (a paused route's, or
    /// one being removed).
    pub(super) wanted: bool,
    /// Removed once the broker confirms the UNSUBSCRIBE.
    pub(super) remove: bool,
    /// The broker granted every filter of the last SUBSCRIBE, on this connection, and the
    /// subscription has been wanted since.
    pub(super) granted: bool,
    /// The packet id of the last SUBSCRIBE sent while wanted: only its SUBACK grants.
    pub(super) subscribing: Option<u16>,
    /// Where the entry stands: every set and withdrawal gives it a new turn, so that a
    /// withdrawal decided earlier can tell it was overtaken (`Connection::withdraw_at`).
    pub(super) turn: u64,
}

impl Entry {
    pub(super) fn attach(&mut self, lane: usize, tx: Deliveries) {
        self.lane = lane;
        self.tx = Some(tx);
        for d in std::mem::take(&mut self.held) {
            self.hand(d);
        }
    }

    pub(super) fn hand(&mut self, d: Delivery<AckToken>) {
        let key = match self.sub.order {
            true => d.msg.order_key(),
            false => 0,
        };
        let d = Delivery {
            lane: self.lane,
            key,
            ..d
        };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::error::SendError(d)) = tx.send(Box::new(d)) {
                    // The route's run ended: held for its next one.
                    self.tx = None;
                    self.held.push(*d);
                }
            }
            None => self.held.push(d),
        }
    }
}

impl Table {
    pub(super) fn new() -> Table {
        Table {
            entries: HashMap::new(),
            pending: HashMap::new(),
            next_packet_id: FIRST_PACKET_ID,
            connected: false,
            unknown: HashSet::new(),
            unclaimed: HashMap::new(),
            settled: false,
            session_present: false,
            turns: 0,
        }
    }

    pub(super) fn granted(&self, id: u32) -> bool {
        self.entries.get(&id).is_some_and(|e| e.granted)
    }

    pub(super) fn next_turn(&mut self) -> u64 {
        self.turns += 1;
        self.turns
    }

    pub(super) fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = match id {
            u16::MAX => FIRST_PACKET_ID,
            n => n + 1,
        };
        id
    }
}

pub(super) fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // A panic while holding it leaves the table usable.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Queues the SUBSCRIBE of `id`'s filters, numbered, with its identifier on a shared
/// connection.
pub(super) fn subscribe(client: &AsyncClient, shared: bool, table: &mut Table, id: u32) {
    let Some(entry) = table.entries.get(&id) else {
        return;
    };
    let sub = entry.sub.clone();
    let filters: Vec<Filter> = sub
        .shared_filters()
        .map(|f| Filter::new(f, sub.qos))
        .collect();
    let properties = shared.then(|| SubscribeProperties {
        id: Some(id as usize),
        user_properties: Vec::new(),
    });
    let mut packet = Subscribe::new_many(filters, properties);
    packet.pkid = table.packet_id();
    let pkid = packet.pkid;
    match client.try_request(Request::Subscribe(packet)) {
        Ok(()) => {
            table.pending.insert(pkid, (id, Op::Subscribe));
            if let Some(entry) = table.entries.get_mut(&id) {
                entry.subscribing = Some(pkid);
            }
        }
        Err(e) => {
            let error = format!("could not queue SUBSCRIBE: {e}");
            events::SubscribeFailed {
                route: &sub.route,
                status: &sub.status,
                error: &error,
            }
            .emit();
        }
    }
}

/// Queues an UNSUBSCRIBE of `filters`, numbered. Not queued (the connection is going), the
/// next CONNACK sends it again.
pub(super) fn unsubscribe_filters(
    client: &AsyncClient,
    table: &mut Table,
    id: u32,
    filters: Vec<String>,
) {
    let packet = Unsubscribe {
        pkid: table.packet_id(),
        filters,
        properties: None,
    };
    let pkid = packet.pkid;
    if client.try_request(Request::Unsubscribe(packet)).is_ok() {
        table.pending.insert(pkid, (id, Op::Unsubscribe));
    }
}

/// The connection settled: what waits under an identifier no route holds is acknowledged,
/// counted; what waits for a route that holds one goes on waiting.
pub(super) fn settle(
    table: &Mutex<Table>,
    client: &AsyncClient,
    shared: &Shared,
    expected: Option<&Identifiers>,
    client_id: &str,
) {
    let mut table = lock(table);
    table.settled = true;
    let gone: Vec<u32> = table
        .unclaimed
        .keys()
        .copied()
        .filter(|id| !expected.is_some_and(|e| e.expects(*id)))
        .collect();
    let epoch = shared.epoch();
    for id in gone {
        let held = table.unclaimed.remove(&id).unwrap_or_default();
        if table.unknown.insert(id) {
            events::UnroutedMessage {
                connection: client_id,
                topic: held.first().map_or("", |d| d.msg.topic.as_str()),
                identifiers: &[id],
                acknowledged: true,
            }
            .emit();
        }
        for d in held {
            events::UnroutedMessage::count();
            ack_now(client, d.token, *epoch);
        }
    }
}

/// Acknowledges a message the poll task settles itself, unless it came on an earlier
/// connection.
pub(super) fn ack_now(client: &AsyncClient, token: AckToken, epoch: u64) {
    if let Some(p) = token.into_pending() {
        if p.qos != QoS::AtMostOnce && p.epoch == epoch {
            let mut publish = Publish::new("", p.qos, bytes::Bytes::new(), None);
            publish.pkid = p.packet_id;
            let _ = client.try_ack(&publish);
        }
    }
}
