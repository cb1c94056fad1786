//! Crash safety: a child process writes through the group-commit writer and
//! prints each write whose completion it observed; the parent SIGKILLs it
//! mid-writes, reopens the store and checks that every observed write is
//! there (and every observed removal is gone), over several kill cycles.
//!
//! The child is this same test binary, re-run with an environment variable
//! naming the store to write to.

mod store_common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use myqtt_core::store::{
    BackendKind, Batch, OpOutcome, SessionKey, Store, StoreConfig, StoreWriter,
};
use store_common::{TempDir, message};

const CHILD_PATH: &str = "MYQTT_STORE_CRASH_CHILD";
const CHILD_BACKEND: &str = "MYQTT_STORE_CRASH_BACKEND";
const CHILD_RUN: &str = "MYQTT_STORE_CRASH_RUN";
const PRODUCERS: usize = 4;
const CYCLES: usize = 3;

fn open(path: &Path, backend: BackendKind) -> Arc<dyn Store> {
    StoreConfig::new(path)
        .backend(backend)
        .open()
        .expect("reopen after the kill")
}

/// The child: producers enqueue, and dequeue every third entry they
/// enqueued, printing each completion; it runs until it is killed.
fn child(path: &str, backend: BackendKind, run: &str) -> ! {
    let store = StoreConfig::new(path)
        .backend(backend)
        .open()
        .expect("child open");
    let writer = Arc::new(StoreWriter::spawn(store).expect("spawn"));
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let writer = Arc::clone(&writer);
            let run = run.to_owned();
            std::thread::spawn(move || {
                let key = SessionKey::broker(format!("c{p}"));
                let mut mine = Vec::new();
                for i in 0u64.. {
                    let payload = format!("{run}-{p}-{i}");
                    let id = writer.new_message_id();
                    let mut b = Batch::new();
                    b.put_message(id, message("crash/t", payload.as_bytes()))
                        .enqueue(key.clone(), id);
                    let out = writer
                        .submit_blocking(b)
                        .expect("submit")
                        .wait()
                        .expect("commit");
                    let OpOutcome::Enqueued { seq, .. } = out[1] else {
                        panic!("{out:?}")
                    };
                    say(&format!("ENQ {p} {seq} {payload}"));
                    mine.push(seq);
                    if i % 3 == 2 {
                        let seq = mine.remove(0);
                        say(&format!("TRY {p} {seq}"));
                        let mut b = Batch::new();
                        b.dequeue(key.clone(), seq);
                        writer
                            .submit_blocking(b)
                            .expect("submit")
                            .wait()
                            .expect("commit");
                        say(&format!("DEQ {p} {seq}"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(1)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What the parent has seen acknowledged, per producer: seq -> payload.
#[derive(Default)]
struct Seen {
    enqueued: BTreeMap<(usize, u64), String>,
    tried: BTreeSet<(usize, u64)>,
    dequeued: BTreeSet<(usize, u64)>,
}

fn parse(seen: &mut Seen, line: &str) -> bool {
    let mut parts = line.split(' ');
    let (Some(kind), Some(p), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(p), Ok(seq)) = (p.parse::<usize>(), seq.parse::<u64>()) else {
        return false;
    };
    match kind {
        "ENQ" => {
            seen.enqueued
                .insert((p, seq), parts.next().unwrap_or_default().to_owned());
            true
        }
        "TRY" => {
            seen.tried.insert((p, seq));
            false
        }
        "DEQ" => {
            seen.dequeued.insert((p, seq));
            false
        }
        _ => false,
    }
}

fn kill_mid_writes_and_check(backend: BackendKind, test_name: &str) {
    let dir = TempDir::new(&format!("crash-{}", backend.name()));
    let mut seen = Seen::default();
    for cycle in 0..CYCLES {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_PATH, dir.path())
            .env(CHILD_BACKEND, backend.name())
            .env(CHILD_RUN, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        // Kill at a different point each cycle, while the child is writing.
        let kill_after = 150 + 70 * cycle;
        let mut acked = 0;
        for line in lines.by_ref() {
            if parse(&mut seen, &line.expect("child output")) {
                acked += 1;
                if acked == kill_after {
                    break;
                }
            }
        }
        assert_eq!(acked, kill_after, "the child stopped before being killed");
        child.kill().expect("SIGKILL");
        // Lines printed before the kill still count as observed.
        for line in lines {
            let Ok(line) = line else { break };
            parse(&mut seen, &line);
        }
        let _ = child.wait();

        let store = open(dir.path(), backend);
        for p in 0..PRODUCERS {
            let queue: BTreeMap<u64, Vec<u8>> = store
                .queue(&SessionKey::broker(format!("c{p}")))
                .expect("read queue")
                .into_iter()
                .map(|q| (q.seq, q.message.publish.payload.to_vec()))
                .collect();
            for (&(_, seq), payload) in seen.enqueued.range((p, 0)..=(p, u64::MAX)) {
                if seen.tried.contains(&(p, seq)) {
                    continue; // its removal may or may not have committed
                }
                assert_eq!(
                    queue.get(&seq).map(Vec::as_slice),
                    Some(payload.as_bytes()),
                    "cycle {cycle}: acknowledged entry {p}/{seq} lost"
                );
            }
            for &(_, seq) in seen.dequeued.range((p, 0)..=(p, u64::MAX)) {
                assert!(
                    !queue.contains_key(&seq),
                    "cycle {cycle}: acknowledged removal {p}/{seq} came back (a QoS 2 duplicate)"
                );
            }
        }
        drop(store);
    }
    assert!(seen.dequeued.len() > 100, "the test exercised removals");
}

fn child_mode() -> Option<(String, BackendKind, String)> {
    let path = std::env::var(CHILD_PATH).ok()?;
    let backend = match std::env::var(CHILD_BACKEND).ok()?.as_str() {
        "sled" => BackendKind::Sled,
        _ => BackendKind::Redb,
    };
    Some((path, backend, std::env::var(CHILD_RUN).unwrap_or_default()))
}

#[test]
fn redb_sigkill_mid_writes_loses_no_acknowledged_write() {
    if let Some((path, backend, run)) = child_mode() {
        child(&path, backend, &run);
    }
    kill_mid_writes_and_check(
        BackendKind::Redb,
        "redb_sigkill_mid_writes_loses_no_acknowledged_write",
    );
}

#[cfg(feature = "sled")]
#[test]
fn sled_sigkill_mid_writes_loses_no_acknowledged_write() {
    if let Some((path, backend, run)) = child_mode() {
        child(&path, backend, &run);
    }
    kill_mid_writes_and_check(
        BackendKind::Sled,
        "sled_sigkill_mid_writes_loses_no_acknowledged_write",
    );
}
