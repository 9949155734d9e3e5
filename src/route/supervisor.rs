//! The supervisor: starts each route (its sink, its source and the pipeline between them, each
//! built by its connection's kind) and holds one handle per route, so that each can be stopped,
//! paused, resumed or replaced alone. A route whose task ends without being asked to is
//! reported to the caller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::handle::{set, RouteHandle, RouteState};
use crate::buffer::{self, BufferSink, BufferSource};
use crate::config::RouteConfig;
use crate::connectors::{Connection, SinkContext};
use crate::events::{self, Part, RouteMetrics};
use crate::flow::{BoxError, DeadLetters, Pause, RouteStats};
use crate::pipeline::{Context, Engine, Settings, Source, SourceContext};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}: no connection \"{1}\"")]
    NoConnection(String, String),
    #[error("{0}: {1}")]
    Sink(String, #[source] BoxError),
    #[error("{0}: {1}")]
    Source(String, #[source] BoxError),
    #[error("{0} is running already")]
    Running(String),
    #[error("{0}: {1}")]
    Rules(String, String),
    #[error("{0}: its dead-letter destination: {1}")]
    DeadLetter(String, #[source] BoxError),
    #[error("{0}: its disk buffer cannot be opened: {1}")]
    Buffer(String, #[source] crate::buffer::StoreError),
}

/// What every route uses.
pub struct Shared {
    pub connections: Arc<BTreeMap<String, Connection>>,
    pub dead_letter: Arc<dyn DeadLetters>,
    /// The most payload bytes a Kafka or RocketMQ group member holds handed over and not
    /// acknowledged (`Config::window_bytes`).
    pub window_bytes: usize,
    /// Where the routes' disk buffers are (`Config::data_dir`).
    pub data_dir: std::path::PathBuf,
    /// The bridge's memory budget (`Config::memory_budget`).
    pub budget: Arc<crate::flow::Budget>,
    /// Cancelled to stop every route at once (each route's own signals are its children).
    pub shutdown: CancellationToken,
}

/// A source the caller opens for a route (`Supervisor::start_with`).
type GivenSource<'a> = Box<dyn FnOnce(&SourceContext) -> Box<dyn Source> + 'a>;

/// How a route task ended: its name, its start's number and the outcome.
type Ended = (String, u64, Result<(), String>);

pub struct Supervisor {
    shared: Shared,
    routes: BTreeMap<String, RouteHandle>,
    /// Numbers each start, so that the end of an earlier run of a route is not taken for the
    /// end of the current one.
    starts: u64,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
}

/// A route's switches and counts, before it runs.
struct Controls {
    pause: Arc<Pause>,
    stats: Arc<RouteStats>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// Cancelled before `shutdown` when the route is stopped for good (removed or disabled).
    gone: CancellationToken,
}

impl Supervisor {
    pub fn new(shared: Shared) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Supervisor {
            shared,
            routes: BTreeMap::new(),
            starts: 0,
            ended_tx,
            ended_rx,
        }
    }

    /// The running routes.
    pub fn routes(&self) -> impl Iterator<Item = &RouteHandle> {
        self.routes.values()
    }

    pub fn route(&self, name: &str) -> Option<&RouteHandle> {
        self.routes.get(name)
    }

    /// Changes what routes started from now on share (a reload); the running ones keep
    /// what they started with.
    pub fn update_shared<T>(&mut self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared)
    }

    /// Starts `route`: its sink and its source (whose consumers connect in the background);
    /// `paused`, the source reads nothing until it is resumed.
    pub fn start(&mut self, route: &RouteConfig, paused: bool) -> Result<(), StartError> {
        self.start_from(route, paused, None)
    }

    /// Starts `route` on a source of the caller's (`open`, given the route's source context)
    /// instead of its own, delivering straight to its sink (no disk buffer), through its rules
    /// when `rules`, its sink's clients named apart (`{route}-replay`): the route's pipeline
    /// for what `mqbridge replay` sends again. The route ends when that source does.
    pub fn start_with(
        &mut self,
        route: &RouteConfig,
        rules: bool,
        open: impl FnOnce(&SourceContext) -> Box<dyn Source>,
    ) -> Result<(), StartError> {
        self.start_from(route, false, Some((rules, Box::new(open))))
    }

    fn start_from(
        &mut self,
        route: &RouteConfig,
        paused: bool,
        given: Option<(bool, GivenSource<'_>)>,
    ) -> Result<(), StartError> {
        let label = format!("{} \"{}\"", route.spelling.what(), route.name);
        if self.routes.contains_key(&route.name) {
            return Err(StartError::Running(label));
        }
        let sink_connection = self.connection(&label, &route.connection)?;
        let source_connection = self.connection(&label, route.source.connection())?;
        let rules = route.rules.compile().map_err(|problems| {
            let text = problems.iter().map(|(key, e)| format!("{key}: {e}"));
            StartError::Rules(label.clone(), text.collect::<Vec<_>>().join("; "))
        })?;
        let rules = rules.filter(|_| given.as_ref().is_none_or(|(rules, _)| *rules));
        let client = match given {
            None => route.client(),
            Some(_) => format!("{}-replay", route.name),
        };
        let sink_context = SinkContext {
            name: &route.name,
            client: &client,
            ordered: route.is_ordered(),
            in_flight: route.concurrency * route.batch_size,
            vocabulary: source_connection.config().vocabulary(),
        };
        let sink = sink_connection
            .sink(&sink_context, &route.sink)
            .map_err(|e| StartError::Sink(label.clone(), e))?;
        let controls = Controls {
            pause: Arc::new(Pause::new(paused)),
            stats: Arc::new(RouteStats::default()),
            shutdown: self.shared.shutdown.child_token(),
            hard_stop: CancellationToken::new(),
            gone: CancellationToken::new(),
        };
        let source_context = SourceContext {
            route: route.name.as_str().into(),
            ordered: route.is_ordered(),
            pause: controls.pause.clone(),
            shutdown: controls.shutdown.clone(),
            bridge: self.shared.shutdown.clone(),
            gone: controls.gone.clone(),
            destination: route.connection.as_str().into(),
            concurrency: route.concurrency,
            batch_size: route.batch_size,
            max_bytes: self.shared.window_bytes,
            budget: self.shared.budget.clone(),
            data_dir: self.shared.data_dir.clone(),
        };
        let replay = given.is_some();
        let source = match given {
            Some((_, open)) => open(&source_context),
            None => source_connection
                .source(&source_context, &route.source)
                .map_err(|e| StartError::Source(label.clone(), e))?,
        };
        events::FlowStarted {
            route: &route.name,
            source: end(&source_connection, route.source.connection()),
            sink: end(&sink_connection, &route.connection),
        }
        .emit();
        if paused {
            events::RoutePaused {
                route: &route.name,
                paused,
            }
            .emit();
        }
        let settings = Settings {
            batch_size: route.batch_size,
            max_wait: route.max_wait,
            ordered: route.is_ordered(),
            concurrency: route.concurrency,
            window: route.sink.order_window(),
        };
        let dead_letter = self.dead_letter(route, &label, &sink_context, "")?;
        let context = |sink, metrics, dead_letter| Context {
            route: source_context.route.clone(),
            metrics,
            max_attempts: route.max_attempts,
            sink,
            dead_letter,
            skip_marked: None,
            rules: None,
            shutdown: controls.shutdown.clone(),
            hard_stop: controls.hard_stop.clone(),
            pause: controls.pause.clone(),
        };
        let metrics = RouteMetrics::new(&route.name, source.lanes(), controls.stats.clone());
        let rules = rules.map(Arc::new);
        let consumers = source.consumers();
        let Some(max_size) = route.buffer.disk().filter(|_| !replay) else {
            let ctx = Context {
                skip_marked: source.skip_marked(),
                rules,
                ..context(sink, metrics, dead_letter)
            };
            let work = source.run(Engine {
                ctx: Arc::new(ctx),
                settings,
            });
            self.launch(route, controls, consumers, None, work);
            return Ok(());
        };
        // With a disk buffer the route runs in two parts: its source, rules and dead letters
        // into the buffer, and the buffer into its sink.
        let path = buffer::path(&self.shared.data_dir, &route.name);
        let store = buffer::Store::open(&path, max_size)
            .map_err(|e| StartError::Buffer(label.clone(), e))?;
        let level = store.level();
        events::BufferOpened {
            route: &route.name,
            path: &path,
            messages: level.messages,
            bytes: level.bytes,
        }
        .emit();
        // Each part closes its own dead-letter sink when it ends.
        let into = Context {
            skip_marked: source.skip_marked(),
            rules,
            ..context(
                Arc::new(BufferSink::new(source_context.route.clone(), store.clone())),
                metrics.part(Part::IntoBuffer),
                self.dead_letter(route, &label, &sink_context, "-in")?,
            )
        };
        // One batch of a key at a time: the buffer keeps the order its batches are written in.
        let into_settings = Settings {
            window: 1,
            ..settings
        };
        let out_source = Box::new(BufferSource::new(store.clone(), &source_context));
        let out_metrics =
            RouteMetrics::new(&route.name, out_source.lanes(), controls.stats.clone());
        let out = context(sink, out_metrics.part(Part::OutOfBuffer), dead_letter);
        let into = source.run(Engine {
            ctx: Arc::new(into),
            settings: into_settings,
        });
        let out = out_source.run(Engine {
            ctx: Arc::new(out),
            settings,
        });
        let work = async move {
            futures::join!(into, out);
        };
        self.launch(route, controls, consumers, Some(store), work.boxed());
        Ok(())
    }

    /// Where `route` sends its dead letters: its own `dead_letter` sink (its clients named
    /// `{route}-dead{part}`, so that the two parts of a route with a disk buffer have their
    /// own), or the bridge's.
    fn dead_letter(
        &self,
        route: &RouteConfig,
        label: &str,
        context: &SinkContext<'_>,
        part: &str,
    ) -> Result<Arc<dyn DeadLetters>, StartError> {
        let Some(own) = &route.dead_letter else {
            return Ok(self.shared.dead_letter.clone());
        };
        let connection = self.connection(label, &own.connection)?;
        let client = format!("{}-dead{part}", route.name);
        let context = SinkContext {
            client: &client,
            ordered: false,
            ..*context
        };
        let sink = connection
            .sink(&context, &own.sink)
            .map_err(|e| StartError::DeadLetter(label.to_owned(), e))?;
        Ok(Arc::new(crate::dead_letter::SinkDeadLetters::new(sink)))
    }

    /// The connection called `name`.
    fn connection(&self, label: &str, name: &str) -> Result<Connection, StartError> {
        let connection = self.shared.connections.get(name);
        connection
            .cloned()
            .ok_or_else(|| StartError::NoConnection(label.to_owned(), name.to_owned()))
    }

    /// Runs `work` as the route's task and keeps its handle.
    fn launch(
        &mut self,
        route: &RouteConfig,
        controls: Controls,
        consumers: Vec<Arc<crate::flow::ConsumerStatus>>,
        buffer: Option<Arc<buffer::Store>>,
        work: BoxFuture<'static, ()>,
    ) {
        let state = Arc::new(Mutex::new(RouteState::Running));
        self.starts += 1;
        let name = route.name.clone();
        let (ended, done) = (self.ended_tx.clone(), state.clone());
        let start = self.starts;
        let task = tokio::spawn({
            let name = name.clone();
            async move {
                let result = std::panic::AssertUnwindSafe(work).catch_unwind().await;
                set(&done, RouteState::Stopped);
                let result = result.map_err(|panic| panic_text(&*panic));
                let _ = ended.send((name, start, result));
            }
        });
        let handle = RouteHandle {
            name: name.clone(),
            config: route.clone(),
            pause: controls.pause,
            consumers,
            start,
            state,
            stats: controls.stats,
            shutdown: controls.shutdown,
            gone: controls.gone,
            hard_stop: controls.hard_stop,
            buffer,
            task: Some(task),
        };
        self.routes.insert(name, handle);
    }

    /// Stops every route: each finishes and acknowledges what it holds, for at most `limit`;
    /// past it, pending deliveries are abandoned (left for the source to deliver again) and the
    /// routes get a short grace to acknowledge what finished and disconnect. Returns false when
    /// deliveries had to be abandoned.
    pub async fn stop_all(&mut self, limit: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.routes.values().for_each(RouteHandle::begin_stop);
        if self.wait_all(limit).await {
            return true;
        }
        warn!(
            ?limit,
            "shutdown timeout: unfinished deliveries are left for the sources to deliver again"
        );
        self.routes.values().for_each(RouteHandle::abandon);
        if !self.wait_all(Duration::from_secs(3)).await {
            self.routes.values_mut().for_each(RouteHandle::abort);
        }
        false
    }

    /// Waits until every route ended by itself (their sources ran out), and gives each one's
    /// counts.
    pub async fn finished(&mut self) -> Vec<(String, crate::flow::StatsSnapshot)> {
        let mut done = Vec::new();
        for (name, mut handle) in std::mem::take(&mut self.routes) {
            handle.wait(Duration::from_secs(365 * 24 * 3600)).await;
            done.push((name, handle.stats()));
        }
        done
    }

    /// Stops one route the same way; true when it finished within `limit`. `for_good`: it does
    /// not come back (removed or disabled), so its source lets go of what it keeps for a next
    /// run.
    pub async fn stop(&mut self, name: &str, limit: Duration, for_good: bool) -> Option<bool> {
        let mut handle = self.routes.remove(name)?;
        if for_good {
            handle.gone.cancel();
        }
        handle.begin_stop();
        if handle.wait(limit).await {
            return Some(true);
        }
        handle.abandon();
        if !handle.wait(Duration::from_secs(3)).await {
            handle.abort();
        }
        Some(false)
    }

    async fn wait_all(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        for handle in self.routes.values_mut() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !handle.wait(left).await {
                return false;
            }
        }
        true
    }

    /// Waits until a route ends without being asked to stop, and says which and why.
    pub async fn unexpected_end(&mut self) -> String {
        loop {
            let Some((name, start, result)) = self.ended_rx.recv().await else {
                return std::future::pending().await;
            };
            let Some(handle) = self.routes.get(&name) else {
                continue;
            };
            if handle.start != start || handle.shutdown.is_cancelled() {
                continue;
            }
            let what = handle.config().spelling.what();
            return match result {
                Ok(()) => format!("{what} \"{name}\" ended on its own"),
                Err(panic) => format!("{what} \"{name}\" failed: {panic}"),
            };
        }
    }
}

/// A route's end, as its start is reported.
fn end<'a>(connection: &Connection, name: &'a str) -> events::End<'a> {
    events::End {
        kind: connection.config().kind(),
        connection: name,
        faces_devices: connection.config().faces_devices(),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}
