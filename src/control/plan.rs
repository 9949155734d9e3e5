//! What a reload does to the routes, decided without touching anything: which keep running, which stop, which restart (keeping their pause) and which
//! start. `reload.rs` applies it. `Stamps` tell a rotated secret or certificate file from an
//! unchanged one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::{Config, RouteConfig};

/// What the plan needs of a flow's settings.
pub(super) trait Flow: PartialEq {
    fn name(&self) -> &str;
    /// Whether it reads from or delivers to `connection`.
    fn uses(&self, connection: &str) -> bool;
    fn enabled(&self) -> bool;
}

impl Flow for RouteConfig {
    fn name(&self) -> &str {
        &self.name
    }
    fn uses(&self, connection: &str) -> bool {
        self.connections().contains(&connection)
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// A running flow: its name, whether it is paused, and the settings it runs with.
pub(super) type Running<C> = (String, bool, C);

#[derive(Debug, PartialEq)]
pub(super) struct Plan<'a, C> {
    pub unchanged: Vec<String>,
    /// Running, and no longer in the file (or disabled there).
    pub removed: Vec<String>,
    /// Running with other settings, or on a connection built anew: stopped, then started with
    /// the new settings, paused if it was.
    pub restart: Vec<(&'a C, bool)>,
    pub added: Vec<&'a C>,
}

impl<'a, C: Flow> Plan<'a, C> {
    /// The flows to stop: removed or restarting.
    pub fn stopping(&self) -> Vec<String> {
        let restart = self.restart.iter().map(|(c, _)| c.name().to_owned());
        self.removed.iter().cloned().chain(restart).collect()
    }

    /// The flows to start: each with whether it starts paused and whether it restarts.
    pub fn starts(&self) -> Vec<(&'a C, bool, bool)> {
        let again = self.restart.iter().map(|&(c, paused)| (c, paused, true));
        again
            .chain(self.added.iter().map(|&c| (c, false, false)))
            .collect()
    }
}

/// The plan from `running` to `wanted`; `everything` restarts every flow that stays (a change
/// to `[mqtt]` or `[dead_letter]`), as does a change of its connection (`changed`).
pub(super) fn plan<'a, C: Flow>(
    running: &[Running<C>],
    wanted: &'a [C],
    everything: bool,
    changed: &BTreeSet<String>,
) -> Plan<'a, C> {
    let wanted: Vec<&C> = wanted.iter().filter(|c| c.enabled()).collect();
    let mut plan = Plan {
        unchanged: Vec::new(),
        removed: Vec::new(),
        restart: Vec::new(),
        added: Vec::new(),
    };
    for (name, paused, current) in running {
        match wanted.iter().find(|c| c.name() == name) {
            None => plan.removed.push(name.clone()),
            Some(&new) => {
                let same = !everything && new == current && !changed.iter().any(|c| new.uses(c));
                match same {
                    true => plan.unchanged.push(name.clone()),
                    false => plan.restart.push((new, *paused)),
                }
            }
        }
    }
    plan.added = wanted
        .into_iter()
        .filter(|c| !running.iter().any(|(name, _, _)| name == c.name()))
        .collect();
    plan
}

/// Files and their contents (`None`: unreadable).
type Contents = Vec<(PathBuf, Option<Vec<u8>>)>;

/// The contents of the files a configuration reads secrets and certificates from, to tell a
/// rotated secret from an unchanged one.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Stamps {
    pub(super) mqtt: Contents,
    pub(super) connections: BTreeMap<String, Contents>,
}

fn read_all(paths: Vec<PathBuf>) -> Contents {
    paths
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).ok();
            (p, content)
        })
        .collect()
}

impl Stamps {
    pub(super) fn of(config: &Config) -> Self {
        let default = config.connections.get(crate::config::DEFAULT_BROKER);
        let mqtt = default.map(|c| c.files_read()).unwrap_or_default();
        Stamps {
            mqtt: read_all(mqtt),
            connections: config
                .connections
                .iter()
                .map(|(name, c)| (name.clone(), read_all(c.files_read())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct F {
        name: &'static str,
        connection: &'static str,
        setting: u32,
        enabled: bool,
    }

    impl Flow for F {
        fn name(&self) -> &str {
            self.name
        }
        fn uses(&self, connection: &str) -> bool {
            self.connection == connection
        }
        fn enabled(&self) -> bool {
            self.enabled
        }
    }

    fn f(name: &'static str, connection: &'static str, setting: u32) -> F {
        F {
            name,
            connection,
            setting,
            enabled: true,
        }
    }

    fn running(flows: &[(F, bool)]) -> Vec<Running<F>> {
        flows
            .iter()
            .map(|(f, paused)| (f.name.to_owned(), *paused, f.clone()))
            .collect()
    }

    fn names<'a>(flows: impl IntoIterator<Item = &'a F>) -> Vec<&'static str> {
        flows.into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn only_what_changed_restarts_and_a_pause_is_kept() {
        let now = running(&[
            (f("same", "k", 1), false),
            (f("tuned", "k", 1), true),
            (f("gone", "k", 1), false),
            (f("off", "k", 1), false),
        ]);
        let mut off = f("off", "k", 1);
        off.enabled = false;
        let wanted = [f("same", "k", 1), f("tuned", "k", 2), off, f("new", "k", 1)];
        let plan = plan(&now, &wanted, false, &BTreeSet::new());
        assert_eq!(plan.unchanged, ["same"]);
        assert_eq!(plan.removed, ["gone", "off"]);
        let restart: Vec<(&str, bool)> = plan.restart.iter().map(|(f, p)| (f.name, *p)).collect();
        assert_eq!(restart, [("tuned", true)]);
        assert_eq!(plan.restart[0].0.setting, 2, "with the new settings");
        assert_eq!(names(plan.added), ["new"]);
    }

    #[test]
    fn a_rebuilt_connection_restarts_its_flows_and_everything_restarts_all() {
        let now = running(&[(f("a", "k", 1), false), (f("b", "r", 1), false)]);
        let wanted = [f("a", "k", 1), f("b", "r", 1)];
        let changed = BTreeSet::from(["k".to_owned()]);
        let by_connection = plan(&now, &wanted, false, &changed);
        assert_eq!(names(by_connection.restart.iter().map(|r| r.0)), ["a"]);
        assert_eq!(by_connection.unchanged, ["b"]);
        let all = plan(&now, &wanted, true, &BTreeSet::new());
        assert_eq!(names(all.restart.iter().map(|r| r.0)), ["a", "b"]);
        assert!(all.unchanged.is_empty() && all.added.is_empty() && all.removed.is_empty());
    }
}
