//! The report: a table per question (throughput, latency, payload size, width, function
//! triggers) and the ratios the targets are stated in, as Markdown.

use std::fmt::Write;

use crate::function::{HttpRun, CONCURRENCY, MAX_WAIT};
use crate::systems::{Outcome, System};

const MIB: f64 = 1024.0;

/// One finished run, for the progress output.
pub fn one_line(o: &Outcome) -> String {
    let s = &o.summary;
    let calls = match &o.calls {
        Some(c) => format!(
            ", {} calls (function's time p50 {}, idle between calls p50 {})",
            c.count,
            ms_fine(c.p50_us),
            ms_fine(c.idle_p50_us)
        ),
        None => String::new(),
    };
    format!(
        "{}/{} unique, {} duplicates, {:.0} msg/s (published at {:.0}/s), p50 {} p99 {} max {}, {:.2} CPU s/100k, peak RSS {:.1} MiB{calls}",
        s.unique,
        s.expected,
        s.duplicates,
        s.rate(),
        o.publish.rate(),
        ms(s.p50_us),
        ms(s.p99_us),
        ms(s.max_us),
        o.cpu_per_100k(),
        o.peak_rss_kib as f64 / MIB,
    )
}

pub fn markdown(
    outcomes: &[Outcome],
    failures: &[String],
    ceiling: Option<f64>,
    rates: &[u32],
    repeat: usize,
) -> String {
    let mut out = String::new();
    let first_size = outcomes.first().map_or(100, |o| o.load.size);
    let max_rate =
        |o: &&Outcome| o.load.rate == 0.0 && o.load.width.is_none() && o.system.http().is_none();
    let _ = writeln!(
        out,
        "## Throughput ({first_size} B payloads, publishing as fast as the broker accepts; median of {repeat} runs)\n"
    );
    throughput_table(
        &mut out,
        outcomes
            .iter()
            .filter(max_rate)
            .filter(|o| o.load.size == first_size),
    );
    ratios(&mut out, outcomes, first_size);
    if let Some(c) = ceiling.filter(|_| !rates.is_empty()) {
        let _ =
            writeln!(
            out,
            "\n## Latency at fixed rates ({first_size} B; {} % of the ceiling's {c:.0} msg/s)\n",
            rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
        );
        latency_table(&mut out, outcomes.iter().filter(|o| o.load.rate > 0.0), c);
    }
    let sizes: Vec<_> = outcomes
        .iter()
        .filter(max_rate)
        .filter(|o| o.load.size != first_size)
        .collect();
    if !sizes.is_empty() {
        let _ = writeln!(
            out,
            "\n## Larger payloads (as fast as the broker accepts; median of {repeat} runs)\n"
        );
        throughput_table(&mut out, sizes.into_iter());
    }
    peers(&mut out, outcomes);
    rocketmq_ratios(&mut out, outcomes);
    broker_ratios(&mut out, outcomes);
    buffer_ratios(&mut out, outcomes);
    downlink_ratios(&mut out, outcomes);
    for sink in [System::File, System::Kafka] {
        let width: Vec<_> = outcomes
            .iter()
            .filter(|o| o.load.width.is_some() && o.system == sink)
            .collect();
        if !width.is_empty() {
            width_table(&mut out, sink, &width);
        }
    }
    functions(&mut out, outcomes, ceiling_of(outcomes, first_size), repeat);
    a_b(&mut out, outcomes);
    if !failures.is_empty() {
        let _ = writeln!(out, "\n## Failed runs\n");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

fn throughput_table<'a>(out: &mut String, rows: impl Iterator<Item = &'a Outcome>) {
    let _ = writeln!(
        out,
        "| system | payload | messages | msg/s | CPU s per 100k | peak RSS MiB | duplicates |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for o in rows {
        let s = &o.summary;
        let _ = writeln!(
            out,
            "| {} | {} B | {} | {} | {} | {} | {} |",
            o.system.name(),
            o.load.size,
            counted(o),
            rate(o),
            measured(o, format!("{:.2}", o.cpu_per_100k())),
            measured(o, format!("{:.1}", o.peak_rss_kib as f64 / MIB)),
            s.duplicates,
        );
    }
}

fn latency_table<'a>(out: &mut String, rows: impl Iterator<Item = &'a Outcome>, ceiling: f64) {
    let _ = writeln!(
        out,
        "| system | target | msg/s | p50 | p99 | max | messages |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for o in rows {
        let s = &o.summary;
        let _ = writeln!(
            out,
            "| {} | {:.0} % ({:.0}/s) | {} | {} | {} | {} | {} |",
            o.system.name(),
            o.load.rate / ceiling * 100.0,
            o.load.rate,
            rate(o),
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.max_us),
            counted(o),
        );
    }
}

fn width_table(out: &mut String, sink: System, rows: &[&Outcome]) {
    let _ = writeln!(
        out,
        "\n## Width: routes on one bridge ({} sink, each route its own filter)\n",
        sink.name()
    );
    let _ = writeln!(out, "| routes | start to all subscribed | RSS subscribed MiB | peak RSS MiB | msg/s | CPU s per 100k | per-route msg/s min / median / max | messages |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in rows {
        let mut r = o.summary.group_rates.clone();
        r.sort_by(f64::total_cmp);
        let (min, med, max) = (r[0], r[r.len() / 2], r[r.len() - 1]);
        let _ = writeln!(
            out,
            "| {} | {:.2} s | {:.1} | {:.1} | {} | {:.2} | {min:.0} / {med:.0} / {max:.0} | {} |",
            o.load.width.unwrap_or(1),
            o.startup.as_secs_f64(),
            o.rss_started_kib as f64 / MIB,
            o.peak_rss_kib as f64 / MIB,
            rate(o),
            o.cpu_per_100k(),
            counted(o),
        );
    }
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let (r0, r1) = (first.load.width.unwrap_or(1), last.load.width.unwrap_or(1));
    if r1 > r0 {
        let per_route =
            (last.rss_started_kib as f64 - first.rss_started_kib as f64) / (r1 - r0) as f64;
        let _ = writeln!(
            out,
            "\nRSS once subscribed grows by {per_route:.0} KiB per route ({r0} → {r1} routes). \
             {r1} routes carry {:.2}× the msg/s of {r0}.",
            last.summary.rate() / first.summary.rate()
        );
    }
}

/// The bridge to the no-op HTTP function: a row per run, then the ratios of the targets.
fn functions(out: &mut String, outcomes: &[Outcome], ceiling: Option<&Outcome>, repeat: usize) {
    let rows: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.system.http().is_some())
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Function triggers (http; as fast as the broker accepts; median of {repeat} runs)\n\n\
         | system | batch | topics | payload | messages | msg/s | CPU s per 100k | peak RSS MiB | calls | messages per call | p50 latency | function's time per call, p50 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in &rows {
        let setup = o.system.http().expect("an http system").setup();
        let (calls, per_call, took) = match &o.calls {
            Some(c) => (
                c.count.to_string(),
                format!("{:.1}", o.summary.unique as f64 / c.count.max(1) as f64),
                ms_fine(c.p50_us),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} B | {} | {} | {:.2} | {:.1} | {calls} | {per_call} | {} | {took} |",
            o.system.name(),
            setup.batch_size,
            o.topics(),
            o.load.size,
            counted(o),
            rate(o),
            o.cpu_per_100k(),
            o.peak_rss_kib as f64 / MIB,
            ms(o.summary.p50_us),
        );
    }
    let _ = writeln!(
        out,
        "\nEach route: `concurrency = {CONCURRENCY}`, `max_wait = \"{MAX_WAIT}\"`. The latency is \
         the publisher's send to the function's receipt: at full speed it is mostly the queue in \
         the broker."
    );
    function_ratios(out, &rows, ceiling);
}

fn function_ratios(out: &mut String, rows: &[&Outcome], ceiling: Option<&Outcome>) {
    let first_size = rows[0].load.size;
    let find = |h: HttpRun| {
        rows.iter().copied().find(|o| {
            o.system == System::Http(h) && o.load.size == first_size && o.summary.complete()
        })
    };
    let _ = writeln!(
        out,
        "\n| ratio ({first_size} B) | measured | target |\n|---|---:|---:|"
    );
    if let (Some(h), Some(c)) = (find(HttpRun::Batch100), ceiling) {
        let _ = writeln!(
            out,
            "| {} / ceiling, throughput | {:.2} | ≥ 0.8 |",
            h.system.name(),
            h.summary.rate() / c.summary.rate()
        );
    }
    let Some(slow) = find(HttpRun::Slow) else {
        return;
    };
    // `concurrency` calls of one message at once, each taking the function's delay.
    let delay_ms = HttpRun::Slow.setup().delay_ms as f64;
    let ideal = CONCURRENCY as f64 * 1000.0 / delay_ms;
    let per_call_ms = CONCURRENCY as f64 / slow.summary.rate() * 1000.0;
    let _ = writeln!(
        out,
        "| {}: msg/s / ({CONCURRENCY} ÷ {delay_ms} ms = {ideal:.0}/s) | {:.3} | ≈ 1 |\n\
         | time per call ({CONCURRENCY} ÷ msg/s) − {delay_ms} ms: the bridge's, with the function's overrun | {:.2} ms | < 1 ms |",
        slow.system.name(),
        slow.summary.rate() / ideal,
        per_call_ms - delay_ms,
    );
    if let Some(c) = &slow.calls {
        let _ = writeln!(
            out,
            "| time per call ({CONCURRENCY} ÷ msg/s) − the function's own p50 ({}): the bridge's | {:.2} ms | < 1 ms |\n\
             | a connection's idle time from an answer to its next call, p50 (p99 {}): the bridge's | {} | < 1 ms |",
            ms_fine(c.p50_us),
            per_call_ms - c.p50_us as f64 / 1000.0,
            ms_fine(c.idle_p99_us),
            ms_fine(c.idle_p50_us),
        );
    }
}

/// The ceiling's full-speed run at `size`, when it delivered everything.
fn ceiling_of(outcomes: &[Outcome], size: usize) -> Option<&Outcome> {
    outcomes.iter().find(|o| {
        o.system == System::Ceiling
            && o.load.size == size
            && o.load.rate == 0.0
            && o.load.width.is_none()
            && o.summary.complete()
    })
}

/// This build against the baseline (`--baseline`), run by run: each row is a pair measured in
/// the same run under the same load.
fn a_b(out: &mut String, outcomes: &[Outcome]) {
    let pairs: Vec<(&Outcome, &Outcome)> = outcomes
        .iter()
        .filter_map(|a| {
            let base = a.system.baseline()?;
            let b = outcomes.iter().find(|b| {
                b.system == base
                    && b.load.size == a.load.size
                    && b.load.rate == a.load.rate
                    && b.load.width == a.load.width
            })?;
            (a.summary.complete() && b.summary.complete()).then_some((a, b))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## This build / baseline (same run, same load)\n\n\
         | sink | load | msg/s | CPU per message | peak RSS | p99 |\n|---|---|---:|---:|---:|---:|"
    );
    for (a, b) in pairs {
        let load = match (a.load.width, a.load.rate) {
            (Some(w), _) => format!("{w} routes, {} B", a.load.size),
            (None, r) if r > 0.0 => format!("{r:.0} msg/s, {} B", a.load.size),
            (None, _) => format!("full speed, {} B", a.load.size),
        };
        let ratio = |x: f64, y: f64| match y > 0.0 {
            true => format!("{:.2}", x / y),
            false => "—".into(),
        };
        let (sa, sb) = (&a.summary, &b.summary);
        let _ = writeln!(
            out,
            "| {} | {load} | {} | {} | {} | {} |",
            a.system.name(),
            ratio(sa.rate(), sb.rate()),
            ratio(a.cpu_per_100k(), b.cpu_per_100k()),
            ratio(a.peak_rss_kib as f64, b.peak_rss_kib as f64),
            ratio(sa.p99_us as f64, sb.p99_us as f64),
        );
    }
}

fn ratios(out: &mut String, outcomes: &[Outcome], size: usize) {
    let find = |sys: System| {
        outcomes.iter().find(|o| {
            o.system == sys
                && o.load.size == size
                && o.load.rate == 0.0
                && o.load.width.is_none()
                && o.summary.complete()
        })
    };
    let alone = find(System::KafkaAlone);
    let (ceiling, file, kafka, peer) = (
        find(System::Ceiling),
        find(System::File),
        find(System::Kafka),
        find(System::Peer),
    );
    // Rows only where both systems ran; no table when none did.
    let mut rows = String::new();
    let mut row = |name: &str,
                   a: Option<&Outcome>,
                   b: Option<&Outcome>,
                   f: fn(&Outcome) -> f64,
                   target: &str| {
        if let (Some(a), Some(b)) = (a, b) {
            let _ = writeln!(rows, "| {name} | {:.2} | {target} |", f(a) / f(b));
        }
    };
    let thr = |o: &Outcome| o.summary.rate();
    let cpu = |o: &Outcome| o.cpu_per_100k();
    row(
        "mqbridge → Kafka / ceiling, throughput",
        kafka,
        ceiling,
        thr,
        "≥ 0.8",
    );
    row(
        "mqbridge → Kafka / Kafka alone, throughput",
        kafka,
        alone,
        thr,
        "",
    );
    row(
        "mqbridge → file / ceiling, throughput",
        file,
        ceiling,
        thr,
        "≥ 0.9",
    );
    row(
        "mqbridge → Kafka / Python peer, throughput",
        kafka,
        peer,
        thr,
        "≥ 5",
    );
    row(
        "mqbridge → Kafka / Python peer, CPU per message",
        kafka,
        peer,
        cpu,
        "≤ 0.2",
    );
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n| ratio | measured | target |\n|---|---:|---:|\n{rows}"
        );
    }
}

/// `sys`'s complete run at full speed with `size`-byte payloads (not a width run).
fn full_speed(outcomes: &[Outcome], sys: System, size: usize) -> Option<&Outcome> {
    outcomes.iter().find(|o| {
        o.system == sys
            && o.load.size == size
            && o.load.rate == 0.0
            && o.load.width.is_none()
            && o.summary.complete()
    })
}

/// mqbridge's Kafka route and the two peers side by side, at every payload size where a peer
/// ran at full speed; a run that lost messages is shown as such. The ratios compare mqbridge
/// with the mq-bridge crate where both delivered everything.
fn peers(out: &mut String, outcomes: &[Outcome]) {
    let systems = [System::Kafka, System::Peer, System::MqBridgePeer];
    let ran = |o: &&Outcome| o.load.rate == 0.0 && o.load.width.is_none();
    let mut sizes: Vec<usize> = outcomes
        .iter()
        .filter(ran)
        .filter(|o| matches!(o.system, System::Peer | System::MqBridgePeer))
        .map(|o| o.load.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Peers (MQTT → Kafka)\n");
    throughput_table(
        out,
        sizes.iter().flat_map(|&size| {
            systems.iter().filter_map(move |&sys| {
                outcomes
                    .iter()
                    .filter(ran)
                    .find(|o| o.system == sys && o.load.size == size)
            })
        }),
    );
    let mut rows = String::new();
    for &size in &sizes {
        let mqbridge = full_speed(outcomes, System::Kafka, size);
        let crate_peer = full_speed(outcomes, System::MqBridgePeer, size);
        if let (Some(a), Some(b)) = (mqbridge, crate_peer) {
            let _ = writeln!(
                rows,
                "| mq-bridge CPU per message / mqbridge CPU per message | {size} B | {:.2} |\n\
                 | mqbridge msg/s / mq-bridge msg/s | {size} B | {:.2} |",
                b.cpu_per_100k() / a.cpu_per_100k(),
                a.summary.rate() / b.summary.rate(),
            );
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n| ratio | payload | measured |\n|---|---:|---:|\n{rows}"
        );
    }
}

/// The bridge to RocketMQ against the MQTT ceiling and against RocketMQ alone, at every payload
/// size where both ran at full speed.
fn rocketmq_ratios(out: &mut String, outcomes: &[Outcome]) {
    let full_speed = |sys: System, size: usize| full_speed(outcomes, sys, size);
    let mut sizes: Vec<usize> = outcomes
        .iter()
        .filter(|o| o.system == System::Rocketmq)
        .map(|o| o.load.size)
        .collect();
    sizes.dedup();
    let mut rows = String::new();
    for size in sizes {
        let Some(bridge) = full_speed(System::Rocketmq, size) else {
            continue;
        };
        let against = [
            (System::Ceiling, "ceiling", "≥ 0.8"),
            (System::RocketmqAlone, "RocketMQ alone", ""),
        ];
        for (sys, name, target) in against {
            if let Some(other) = full_speed(sys, size) {
                let _ = writeln!(
                    rows,
                    "| mqbridge → RocketMQ / {name}, throughput | {size} B | {:.2} | {target} |",
                    bridge.summary.rate() / other.summary.rate()
                );
            }
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n## MQTT → RocketMQ\n\n| ratio | payload | measured | target |\n|---|---:|---:|---:|\n{rows}"
        );
    }
}

/// The bridge between two brokers against the MQTT ceiling, with its peak memory, at every
/// payload size where it ran at full speed.
fn broker_ratios(out: &mut String, outcomes: &[Outcome]) {
    let mut rows = String::new();
    let mut sizes: Vec<usize> = outcomes
        .iter()
        .filter(|o| o.system == System::Broker)
        .map(|o| o.load.size)
        .collect();
    sizes.dedup();
    for size in sizes {
        let bridge = full_speed(outcomes, System::Broker, size);
        let ceiling = full_speed(outcomes, System::Ceiling, size);
        if let (Some(bridge), Some(ceiling)) = (bridge, ceiling) {
            let _ = writeln!(
                rows,
                "| {} / ceiling, throughput (peak RSS {:.1} MiB) | {size} B | {:.2} | ≥ 0.8 |",
                System::Broker.name(),
                bridge.peak_rss_kib as f64 / 1024.0,
                bridge.summary.rate() / ceiling.summary.rate()
            );
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n## MQTT → MQTT\n\n| ratio | payload | measured | target |\n|---|---:|---:|---:|\n{rows}"
        );
    }
}

/// Routes behind a disk buffer against the same route without one and against the MQTT
/// ceiling, with their peak memory, at every payload size where they ran at full speed.
fn buffer_ratios(out: &mut String, outcomes: &[Outcome]) {
    let mut rows = String::new();
    let mut sizes: Vec<usize> = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o.system,
                System::FileDisk | System::KafkaDisk | System::DrainDisk
            )
        })
        .map(|o| o.load.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        let ceiling = full_speed(outcomes, System::Ceiling, size);
        for (disk, plain) in [
            (System::FileDisk, System::File),
            (System::KafkaDisk, System::Kafka),
        ] {
            let Some(d) = full_speed(outcomes, disk, size) else {
                continue;
            };
            if let Some(p) = full_speed(outcomes, plain, size) {
                let _ = writeln!(
                    rows,
                    "| {} / {}, throughput (peak RSS {:.1} MiB) | {size} B | {:.2} | ≥ 0.8 |",
                    disk.name(),
                    plain.name(),
                    d.peak_rss_kib as f64 / 1024.0,
                    d.summary.rate() / p.summary.rate()
                );
            }
            if let Some(c) = ceiling {
                let _ = writeln!(
                    rows,
                    "| {} / ceiling, throughput | {size} B | {:.2} | ≥ 0.8 |",
                    disk.name(),
                    d.summary.rate() / c.summary.rate()
                );
            }
        }
        // A full buffer's drain against what Kafka takes from a producer alone, and against
        // the live route.
        if let Some(d) = full_speed(outcomes, System::DrainDisk, size) {
            for (other, target) in [(System::KafkaAlone, ""), (System::Kafka, "")] {
                if let Some(o) = full_speed(outcomes, other, size) {
                    let _ = writeln!(
                        rows,
                        "| {} / {}, throughput (peak RSS {:.1} MiB) | {size} B | {:.2} | {target} |",
                        System::DrainDisk.name(),
                        other.name(),
                        d.peak_rss_kib as f64 / 1024.0,
                        d.summary.rate() / o.summary.rate()
                    );
                }
            }
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n## Disk buffers\n\n| ratio | payload | measured | target |\n|---|---:|---:|---:|\n{rows}"
        );
    }
}

/// Downlinks against the MQTT ceiling and against their source alone, with the bridge's peak
/// memory, at every payload size where they ran at full speed.
fn downlink_ratios(out: &mut String, outcomes: &[Outcome]) {
    let full_speed = |sys: System, size: usize| full_speed(outcomes, sys, size);
    let mut rows = String::new();
    for (down, alone, source) in [
        (System::DownKafka, System::KafkaAlone, "Kafka alone"),
        (System::DrainKafka, System::KafkaAlone, "Kafka alone"),
        (
            System::DownRocketmq,
            System::RocketmqAlone,
            "RocketMQ alone",
        ),
        (
            System::DrainRocketmq,
            System::RocketmqAlone,
            "RocketMQ alone",
        ),
    ] {
        let mut sizes: Vec<usize> = outcomes
            .iter()
            .filter(|o| o.system == down)
            .map(|o| o.load.size)
            .collect();
        sizes.dedup();
        for size in sizes {
            let Some(bridge) = full_speed(down, size) else {
                continue;
            };
            let _ = writeln!(
                rows,
                "| {} msg/s, peak RSS {:.1} MiB | {size} B | {:.0} | |",
                down.name(),
                bridge.peak_rss_kib as f64 / 1024.0,
                bridge.summary.rate()
            );
            for (sys, name, target) in [(System::Ceiling, "ceiling", "≥ 0.8"), (alone, source, "")]
            {
                if let Some(other) = full_speed(sys, size) {
                    let _ = writeln!(
                        rows,
                        "| {} / {name}, throughput | {size} B | {:.2} | {target} |",
                        down.name(),
                        bridge.summary.rate() / other.summary.rate()
                    );
                }
            }
            if down.drain() {
                drain_rows(&mut rows, bridge, full_speed(System::Ceiling, size));
            }
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n## Downlinks (Kafka or RocketMQ → MQTT)\n\n| figure | payload | measured | target |\n|---|---:|---:|---:|\n{rows}"
        );
    }
}

/// A drain's clock starts with the bridge: its start and its joining the group are in the
/// rate above. These rows tell them apart: the time to the first delivery, and the rate from
/// there on.
fn drain_rows(rows: &mut String, bridge: &Outcome, ceiling: Option<&Outcome>) {
    let (name, size, s) = (bridge.system.name(), bridge.load.size, &bridge.summary);
    let _ = writeln!(
        rows,
        "| {name}: start to first delivery | {size} B | {:.2} s | |",
        s.first_arrival().as_secs_f64()
    );
    let _ = writeln!(
        rows,
        "| {name} msg/s from the first delivery | {size} B | {:.0} | |",
        s.flowing_rate()
    );
    if let Some(ceiling) = ceiling {
        let _ = writeln!(
            rows,
            "| {name} from the first delivery / ceiling | {size} B | {:.2} | ≥ 0.8 |",
            s.flowing_rate() / ceiling.summary.rate()
        );
    }
}

/// A process figure, or a dash for Kafka or RocketMQ alone, which run no process of their own.
fn measured(o: &Outcome, figure: String) -> String {
    match o.system {
        System::KafkaAlone | System::RocketmqAlone => "—".into(),
        _ => figure,
    }
}

fn counted(o: &Outcome) -> String {
    let s = &o.summary;
    match s.complete() {
        true => s.unique.to_string(),
        false => format!("**FAILED: {} of {}**", s.unique, s.expected),
    }
}

fn rate(o: &Outcome) -> String {
    match o.summary.complete() {
        true => format!("{:.0}", o.summary.rate()),
        false => "—".into(),
    }
}

fn ms(us: u32) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// A call's time, to 10 µs.
fn ms_fine(us: u32) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}
