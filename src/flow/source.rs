//! What a source gives the pipeline: deliveries, each tagged with the lane it arrived on and a
//! token to acknowledge it, and an `Acker` per lane that the pipeline hands the tokens back to,
//! in receive order, once their messages are done with.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::message::Message;

/// Where a source hands its route's pipeline the deliveries, one box each. An unbounded
/// channel keeps its slots in blocks of 32: unboxed, a route's first block took 11 KiB, most of
/// what a route cost at 1,000 routes; boxed, it takes 256 bytes.
pub type IntakeSender<T> = mpsc::UnboundedSender<Box<Delivery<T>>>;
pub type Intake<T> = mpsc::UnboundedReceiver<Box<Delivery<T>>>;

/// A source's intake and the pipeline's end of it.
pub fn intake<T>() -> (IntakeSender<T>, Intake<T>) {
    mpsc::unbounded_channel()
}

/// A received message and what the source needs to acknowledge it.
pub struct Delivery<T> {
    /// The acknowledgement lane it arrived on (an MQTT consumer connection; a partition or a
    /// queue for sources that have them): acks go out in receive order per lane.
    pub lane: usize,
    pub msg: Message,
    pub token: T,
    /// Its order key: an ordered route delivers the messages of one key in receive order and
    /// one batch at a time (MQTT: the topic's hash; a partition or queue for sources that have
    /// them). Unordered routes ignore it.
    pub key: u64,
}

/// Acknowledges a lane's messages to the source.
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    type Token: Send + 'static;

    /// Takes a run of the lane's messages in the order they were received, each released only
    /// once everything received before it on the lane is done: `true` when the message was
    /// delivered or dead-lettered (acknowledge it), `false` when it was given up at a hard stop
    /// (leave it for the source to redeliver).
    async fn ack(&self, released: Vec<(Self::Token, bool)>);

    /// Ends the lane after its last ack (MQTT: DISCONNECT, keeping the session).
    async fn close(&self);
}
