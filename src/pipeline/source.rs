//! A flow's source as the engine runs it. A connector opens it for a route (`SourceContext`
//! says what the route asks of it); it shows its consumers, and it runs the route's pipeline
//! (`Engine`) with what it reads, handing each message over with its lane and order key and
//! taking the acknowledgements back through its `Acker`s, one per lane.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::batcher::Settings;
use super::deliver::Context;
use super::driver::Pipeline;
use crate::flow::{Acker, Budget, ConsumerStatus, Intake, Pause};

/// What a route asks of its source.
pub struct SourceContext {
    pub route: Arc<str>,
    /// Whether the route keeps order per key: the source gives each message its key (MQTT: a
    /// hash of the topic; a partition or a queue for sources that have them).
    pub ordered: bool,
    pub pause: Arc<Pause>,
    /// Cancelled when the route stops.
    pub shutdown: CancellationToken,
    /// Cancelled when the whole bridge stops.
    pub bridge: CancellationToken,
    /// Cancelled, before `shutdown`, when the route stops for good (removed or disabled): a
    /// source lets go of what it keeps for the route's next run.
    pub gone: CancellationToken,
    /// The connection the route delivers to: routes on one broker that deliver to the same one
    /// stall together, so they may share consumer connections.
    pub destination: Arc<str>,
    /// Batches in delivery at once, and their size: a group member reads ahead at most one
    /// batch more than the route has in delivery.
    pub concurrency: usize,
    pub batch_size: usize,
    /// The most payload bytes a group member holds handed over and not acknowledged.
    pub max_bytes: usize,
    /// The bridge's memory budget, which every reader takes a share of.
    pub budget: Arc<Budget>,
    /// Where the bridge keeps its state (`Config::data_dir`).
    pub data_dir: std::path::PathBuf,
}

/// A route's source, opened by its connector.
pub trait Source: Send {
    /// Its acknowledgement lanes.
    fn lanes(&self) -> usize;
    /// What each of its consumers shows.
    fn consumers(&self) -> Vec<Arc<ConsumerStatus>>;
    /// The user property that marks what the bridge published itself: the route acknowledges
    /// such a message without delivering it, so that opposite routes cannot echo it forever.
    fn skip_marked(&self) -> Option<Arc<str>> {
        None
    }
    /// Reads into `engine`'s pipeline; the future ends once the pipeline has closed every lane
    /// and the source has let go of what it holds (disconnected, left its group).
    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()>;
}

/// A route's pipeline, waiting for its source's intake and ackers.
pub struct Engine {
    pub ctx: Arc<Context>,
    pub settings: Settings,
}

impl Engine {
    /// The pipeline taking what arrives on `intake`, acknowledging through `ackers` (one per
    /// lane, by lane number).
    pub fn pipeline<A: Acker>(self, intake: Intake<A::Token>, ackers: Vec<A>) -> Pipeline<A> {
        Pipeline {
            ctx: self.ctx,
            settings: self.settings,
            intake,
            ackers,
        }
    }
}
