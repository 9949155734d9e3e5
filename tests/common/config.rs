//! One typed way for the tests to write a bridge's config: a [`Config`] with its `[mqtt]`,
//! `[admin]`, connections, routes, downlinks and dead-letter file, written out as TOML by the
//! `toml` crate, so that quoting and escaping are never a test's concern. Keys the builder has
//! no method for go through `set`, which takes a dotted path into sub-tables
//! (`publisher.client_id_property`, `env.OUT`).

use toml::{Table, Value};

use super::unique;

/// A bridge's config file.
#[derive(Clone, Debug)]
pub struct Config {
    root: Table,
}

impl Config {
    /// `[mqtt]` on the broker at 127.0.0.1:`mqtt_port`, with a client id prefix made unique
    /// from `tag`.
    pub fn new(mqtt_port: u16, tag: &str) -> Self {
        Self::on(&format!("mqtt://127.0.0.1:{mqtt_port}"), tag)
    }

    /// `[mqtt]` on the broker at `url` (`mqtts://...`).
    pub fn on(url: &str, tag: &str) -> Self {
        let mut mqtt = Table::new();
        mqtt.insert("url".into(), url.into());
        mqtt.insert("client_id_prefix".into(), unique(tag).into());
        let mut root = Table::new();
        root.insert("mqtt".into(), mqtt.into());
        Config { root }
    }

    /// Sets `[mqtt] key` (`receive_maximum`, `keep_alive`, `tls.ca_file`, ...).
    pub fn mqtt(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(table(&mut self.root, "mqtt"), key, value.into());
        self
    }

    /// `[admin] listen` on 127.0.0.1:`port`.
    pub fn admin(self, port: u16) -> Self {
        self.admin_key("listen", format!("127.0.0.1:{port}"))
    }

    /// Sets `[admin] key` (`token`, `failing_after`, ...).
    pub fn admin_key(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(table(&mut self.root, "admin"), key, value.into());
        self
    }

    /// `[connections.NAME]`.
    pub fn connection(mut self, name: &str, connection: Connection) -> Self {
        table(&mut self.root, "connections").insert(name.into(), connection.0.into());
        self
    }

    /// One more `[[routes]]`.
    pub fn route(mut self, route: Route) -> Self {
        array(&mut self.root, "routes").push(route.0.into());
        self
    }

    /// One more `[[downlinks]]`.
    pub fn downlink(mut self, downlink: Downlink) -> Self {
        array(&mut self.root, "downlinks").push(downlink.0.into());
        self
    }

    /// `[dead_letter] path`.
    pub fn dead_letter(mut self, path: &str) -> Self {
        put(table(&mut self.root, "dead_letter"), "path", path.into());
        self
    }

    /// Sets any key of the file by its dotted path (`shutdown_timeout`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(&mut self.root, key, value.into());
        self
    }

    /// Removes the key at the dotted path `key` (`mqtt.client_id_prefix`), if it is there.
    pub fn unset(mut self, key: &str) -> Self {
        remove(&mut self.root, key);
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        toml::to_string(&self.root).expect("a config is TOML")
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// A `[connections.NAME]` table.
#[derive(Clone, Debug)]
pub struct Connection(Table);

impl Connection {
    /// A connection of `kind` with no other key.
    pub fn of(kind: &str) -> Self {
        let mut t = Table::new();
        t.insert("type".into(), kind.into());
        Connection(t)
    }

    pub fn file(path: &str) -> Self {
        Self::of("file").set("path", path)
    }

    pub fn kafka(bootstrap: &str) -> Self {
        Self::of("kafka").set("bootstrap_servers", bootstrap)
    }

    pub fn rocketmq(namesrv: &str) -> Self {
        Self::of("rocketmq").set("namesrv", vec![namesrv])
    }

    pub fn http(url: &str) -> Self {
        Self::of("http").set("url", url)
    }

    pub fn exec(command: &[&str]) -> Self {
        Self::of("exec").set("command", command.to_vec())
    }

    /// Sets `key` (a dotted path goes into sub-tables: `env.OUT`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(&mut self.0, key, value.into());
        self
    }

    /// One librdkafka setting (its name has dots of its own).
    pub fn librdkafka(mut self, key: &str, value: &str) -> Self {
        table(&mut self.0, "librdkafka").insert(key.into(), value.into());
        self
    }
}

/// A `[[routes]]` entry.
#[derive(Clone, Debug)]
pub struct Route(Table);

impl Route {
    /// Route `name` from the MQTT `filter` to `connection`.
    pub fn new(name: &str, filter: &str, connection: &str) -> Self {
        Route(Table::new())
            .set("name", name)
            .set("filters", vec![filter])
            .set("connection", connection)
    }

    /// Route `name` reading `topic` of the Kafka or RocketMQ connection `source` (from the
    /// earliest offset) into `connection`.
    pub fn reading(name: &str, source: &str, topic: &str, connection: &str) -> Self {
        Route(Table::new())
            .set("name", name)
            .set("connection", connection)
            .set("source.connection", source)
            .set("source.topic", topic)
            .set("source.start", "earliest")
    }

    /// Route `name` into `connection`, reading what the caller sets under `source.*` (an MQTT
    /// broker's `source.filters`, `source.consumers`, ...).
    pub fn to(name: &str, connection: &str) -> Self {
        Route(Table::new())
            .set("name", name)
            .set("connection", connection)
    }

    /// Its filters, all of them.
    pub fn filters(self, filters: &[&str]) -> Self {
        self.set("filters", filters.to_vec())
    }

    /// Sets `key` (`topic`, `consumers`, `batch_size`, `max_wait`, `enabled`, ...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(&mut self.0, key, value.into());
        self
    }
}

/// A `[[downlinks]]` entry, reading from the earliest offset.
#[derive(Clone, Debug)]
pub struct Downlink(Table);

impl Downlink {
    /// Downlink `name` from `topic` of `connection` to the MQTT topic template `mqtt_topic`.
    pub fn new(name: &str, connection: &str, topic: &str, mqtt_topic: &str) -> Self {
        Downlink(Table::new())
            .set("name", name)
            .set("connection", connection)
            .set("topic", topic)
            .set("mqtt_topic", mqtt_topic)
            .set("start", "earliest")
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        put(&mut self.0, key, value.into());
        self
    }
}

/// The sub-table `key` of `t`, made when missing.
fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    match t
        .entry(key.to_owned())
        .or_insert_with(|| Table::new().into())
    {
        Value::Table(inner) => inner,
        other => panic!("{key} is {other}, not a table"),
    }
}

/// The array `key` of `t`, made when missing.
fn array<'a>(t: &'a mut Table, key: &str) -> &'a mut Vec<Value> {
    match t
        .entry(key.to_owned())
        .or_insert_with(|| Vec::<Value>::new().into())
    {
        Value::Array(inner) => inner,
        other => panic!("{key} is {other}, not an array"),
    }
}

/// Sets the dotted path `key` in `t`.
fn put(t: &mut Table, key: &str, value: Value) {
    match key.split_once('.') {
        Some((head, rest)) => put(table(t, head), rest, value),
        None => {
            t.insert(key.to_owned(), value);
        }
    }
}

/// Removes the dotted path `key` from `t`, if it is there.
fn remove(t: &mut Table, key: &str) {
    match key.split_once('.') {
        Some((head, rest)) => {
            if let Some(Value::Table(inner)) = t.get_mut(head) {
                remove(inner, rest);
            }
        }
        None => {
            t.remove(key);
        }
    }
}
