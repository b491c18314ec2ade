//! Tests of the checkpoint store: versions, rollback, retention, corruption, growth, savepoints.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use heed::PutFlags;

use super::*;
use crate::error::ErrorDomain;

type Model = BTreeMap<(String, u32, Vec<u8>), Vec<u8>>;

const OPS: [&str; 2] = ["count", "join"];

fn fields(epoch: u64) -> ManifestFields {
    ManifestFields {
        job: "test-job".into(),
        plan_fingerprint: 0xfeed,
        epoch,
        key_groups: OPS.iter().map(|o| (o.to_string(), 0..128)).collect(),
    }
}

/// Everything a reader of `version` sees, through `scan`, checked against `get`.
fn read_all(store: &CheckpointStore, version: u64) -> Model {
    let r = store.reader(version).expect("reader");
    let mut out = Model::new();
    for op in OPS {
        for e in r.scan(op, 0..u32::MAX).expect("scan") {
            let (kg, k, v) = e.expect("entry");
            assert_eq!(
                r.get(op, kg, k).expect("get"),
                Some(v),
                "get agrees with scan"
            );
            assert!(
                out.insert((op.to_string(), kg, k.to_vec()), v.to_vec())
                    .is_none(),
                "a key appears once"
            );
        }
    }
    out
}

fn assert_reads(store: &CheckpointStore, version: u64, model: &Model) {
    assert_eq!(
        &read_all(store, version),
        model,
        "state of version {version}"
    );
    let r = store.reader(version).expect("reader");
    // Keys absent from the model read as absent.
    for ((op, kg, k), _) in model.iter().take(3) {
        let mut other = k.clone();
        other.push(b'!');
        assert_eq!(r.get(op, *kg, &other).expect("get"), None);
    }
    assert_eq!(r.get("no-such-operator", 0, b"k").expect("get"), None);
}

/// Apply changes to the model and the writer alike.
struct Step<'a> {
    w: Writer,
    model: &'a mut Model,
}

impl Step<'_> {
    fn put(&mut self, op: &str, kg: u32, k: &[u8], v: &[u8]) {
        self.w.put(op, kg, k, v);
        self.model
            .insert((op.to_string(), kg, k.to_vec()), v.to_vec());
    }
    fn delete(&mut self, op: &str, kg: u32, k: &[u8]) {
        self.w.delete(op, kg, k);
        self.model.remove(&(op.to_string(), kg, k.to_vec()));
    }
}

fn step<'a>(store: &CheckpointStore, n: u64, model: &'a mut Model) -> Step<'a> {
    Step {
        w: store.begin(n).expect("begin"),
        model,
    }
}

fn commit(store: &mut CheckpointStore, s: Step<'_>, n: u64) -> PendingInfo {
    store.commit(s.w, &fields(n * 10)).expect("commit")
}

/// Three incremental versions with puts, overwrites and deletes over two operators.
fn three_versions(store: &mut CheckpointStore) -> [Model; 3] {
    let mut m = Model::new();
    let mut s = step(store, 1, &mut m);
    for i in 0..100u32 {
        s.put(
            "count",
            i % 128,
            format!("user-{i}").as_bytes(),
            format!("v1-{i}").as_bytes(),
        );
    }
    s.put("join", 5, b"left", b"L1");
    s.w.put_meta("source/orders", b"offset=100");
    s.w.put_meta("sink/out", b"pending=part-1");
    let info = commit(store, s, 1);
    assert_eq!((info.puts, info.deletes), (101, 0));
    let m1 = m.clone();

    let mut s = step(store, 2, &mut m);
    for i in (0..100u32).step_by(3) {
        s.put(
            "count",
            i % 128,
            format!("user-{i}").as_bytes(),
            format!("v2-{i}").as_bytes(),
        );
    }
    for i in (1..100u32).step_by(10) {
        s.delete("count", i % 128, format!("user-{i}").as_bytes());
    }
    s.delete("count", 3, b"never-existed");
    s.put("join", 6, b"right", b"R2");
    s.w.put_meta("source/orders", b"offset=200");
    let info = commit(store, s, 2);
    assert_eq!(info.deletes, 10, "deleting a missing key writes nothing");
    let m2 = m.clone();

    let mut s = step(store, 3, &mut m);
    for i in (1..100u32).step_by(20) {
        // Re-create some deleted keys.
        s.put(
            "count",
            i % 128,
            format!("user-{i}").as_bytes(),
            format!("v3-{i}").as_bytes(),
        );
    }
    s.delete("join", 5, b"left");
    s.put("join", 7, b"dup", b"first");
    s.put("join", 7, b"dup", b"last"); // the last write of a key wins
    s.w.put_meta("source/orders", b"offset=300");
    commit(store, s, 3);
    let m3 = m.clone();
    assert_eq!(
        m3.get(&("join".to_string(), 7, b"dup".to_vec()))
            .map(Vec::as_slice),
        Some(&b"last"[..])
    );
    [m1, m2, m3]
}

fn open(dir: &Path) -> CheckpointStore {
    CheckpointStore::open(dir, 0).expect("open")
}

#[test]
fn incremental_versions_read_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let models = three_versions(&mut store);
    for (i, m) in models.iter().enumerate() {
        assert_reads(&store, i as u64 + 1, m);
        store.verify(i as u64 + 1).expect("verify");
    }
    // Meta entries belong to their version only.
    let r1 = store.reader(1).expect("reader");
    assert_eq!(
        r1.meta("source/orders").expect("meta"),
        Some(&b"offset=100"[..])
    );
    assert_eq!(
        r1.meta("sink/out").expect("meta"),
        Some(&b"pending=part-1"[..])
    );
    let r2 = store.reader(2).expect("reader");
    assert_eq!(
        r2.meta("source/orders").expect("meta"),
        Some(&b"offset=200"[..])
    );
    assert_eq!(r2.meta("sink/out").expect("meta"), None);
    // A range of key groups.
    let part: Vec<u32> = r2
        .scan("count", 10..20)
        .expect("scan")
        .map(|e| e.expect("entry").0)
        .collect();
    let want: Vec<u32> = models[1]
        .keys()
        .filter(|(o, kg, _)| o == "count" && (10..20).contains(kg))
        .map(|k| k.1)
        .collect();
    assert_eq!(part, want);
    // Manifests count the whole state, not the delta.
    let man = store.manifest(3).expect("manifest");
    let count = models[2].keys().filter(|(o, _, _)| o == "count").count() as u64;
    assert_eq!(man.operators["count"].digest.records, count);
    assert_eq!(man.operators["count"].key_groups, Some(0..128));
    assert_eq!(
        (man.checkpoint, man.epoch, man.parent, man.worker),
        (3, 30, Some(2), Some(0))
    );
    assert_eq!(man.encoding, STATE_ENCODING_VERSION);
    drop(r1);
    drop(r2);
    // Survives closing and reopening.
    drop(store);
    let store = open(dir.path());
    for (i, m) in models.iter().enumerate() {
        assert_reads(&store, i as u64 + 1, m);
    }
}

#[test]
fn pending_version_is_ignored_until_promoted_and_rollback_returns_to_the_previous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let [m1, m2, m3] = three_versions(&mut store);
    assert_eq!(store.latest_complete().expect("latest"), None);
    store.promote(1).expect("promote");
    store.promote(1).expect("promote is idempotent");
    assert_eq!(store.latest_complete().expect("latest"), Some(1));
    assert!(!store.reader(2).expect("reader").is_complete());
    assert!(store.reader(1).expect("reader").is_complete());
    // Checkpoint 2 never completed (another worker died): return to 1.
    assert_eq!(store.rollback_to(Some(1)).expect("rollback"), vec![2, 3]);
    assert_eq!(
        store.versions().expect("versions"),
        vec![VersionInfo {
            checkpoint: 1,
            complete: true
        }]
    );
    assert_reads(&store, 1, &m1);
    assert!(store.reader(2).is_err());
    store.verify(1).expect("verify");
    // Writing continues from 1, reusing the id 2.
    let mut m = m1.clone();
    let mut s = step(&store, 2, &mut m);
    s.put("count", 0, b"user-0", b"again");
    commit(&mut store, s, 2);
    assert_reads(&store, 2, &m);
    assert_ne!(m, m2);
    assert_ne!(m, m3);
    store.verify(2).expect("verify");
    // begin refuses an id that is not newer.
    let e = store.begin(2).expect_err("refused");
    assert!(e.message.contains("not newer"), "{e}");
    // Rolling back to nothing empties the store.
    store.rollback_to(None).expect("rollback");
    assert!(store.versions().expect("versions").is_empty());
    assert_eq!(store.stats().expect("stats").data_entries, 0);
    assert!(store.rollback_to(Some(7)).is_err());
}

#[test]
fn retention_keeps_entries_bounded_over_50_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let keys = 200u32;
    let mut m = Model::new();
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    for n in 1..=50u64 {
        let mut s = step(&store, n, &mut m);
        for i in 0..keys {
            // Rewrite every key; delete and re-create a rotating tenth of them.
            if (i as u64 + n).is_multiple_of(10) {
                s.delete("count", i % 128, &i.to_be_bytes());
            } else {
                s.put(
                    "count",
                    i % 128,
                    &i.to_be_bytes(),
                    format!("{n:08}-{i:08}").as_bytes(),
                );
            }
        }
        s.w.put_meta("source/orders", &n.to_be_bytes());
        commit(&mut store, s, n);
        store.promote(n).expect("promote");
        let info = store.retain(2).expect("retain");
        if n > 2 {
            assert_eq!(info.dropped, vec![n - 2]);
        }
        let st = store.stats().expect("stats");
        entries.push(st.data_entries);
        sizes.push(st.file_bytes);
        assert!(st.versions <= 2);
        // The log holds what the versions above the oldest kept one wrote.
        let log_max = if n > 2 { keys } else { 2 * keys };
        assert!(
            st.log_entries <= u64::from(log_max),
            "checkpoint {n}: log has {} entries",
            st.log_entries
        );
    }
    // Two retained versions of 200 keys: at most 400 entries, whatever the history.
    assert!(
        entries.iter().all(|&e| e <= 2 * u64::from(keys)),
        "{entries:?}"
    );
    assert_eq!(entries[49], entries[20], "steady state: {entries:?}");
    assert!(
        sizes[49] <= sizes[9] + 64 * 1024,
        "data.mdb grew from {} to {}",
        sizes[9],
        sizes[49]
    );
    assert_reads(&store, 50, &m);
    store.verify(49).expect("verify 49");
    store.verify(50).expect("verify 50");
    assert!(store.reader(48).is_err(), "dropped versions are gone");
    assert!(store.retain(0).is_err());
}

#[test]
fn retention_keeps_pending_versions_and_versions_between_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let mut m = Model::new();
    let mut models = vec![Model::new()];
    for n in 1..=5u64 {
        let mut s = step(&store, n, &mut m);
        for i in 0..20u32 {
            if (i as u64).is_multiple_of(n) {
                s.put("count", i, b"k", format!("{n}-{i}").as_bytes());
            }
        }
        if n == 3 {
            s.delete("count", 0, b"k");
        }
        commit(&mut store, s, n);
        models.push(m.clone());
    }
    // 1 and 3 and 4 complete; 2 pending (superseded by 3); 5 pending (in flight).
    for n in [1, 3, 4] {
        store.promote(n).expect("promote");
    }
    let info = store.retain(2).expect("retain");
    assert_eq!(info.dropped, vec![1, 2]);
    let listed: Vec<(u64, bool)> = store
        .versions()
        .expect("versions")
        .iter()
        .map(|v| (v.checkpoint, v.complete))
        .collect();
    assert_eq!(listed, vec![(3, true), (4, true), (5, false)]);
    for n in [3u64, 4, 5] {
        assert_reads(&store, n, &models[n as usize]);
        store.verify(n).expect("verify");
    }
    // The gap case: 3 complete, 4 pending dropped once 5 completes, 3 still kept.
    store.rollback_to(Some(3)).expect("rollback");
    let mut m = models[3].clone();
    let mut s = step(&store, 4, &mut m);
    s.put("count", 1, b"k", b"4-pending");
    s.put("count", 2, b"k", b"4-pending-then-5");
    commit(&mut store, s, 4);
    let m4 = m.clone();
    let mut s = step(&store, 5, &mut m);
    s.put("count", 2, b"k", b"5");
    commit(&mut store, s, 5);
    store.promote(5).expect("promote");
    let info = store.retain(2).expect("retain");
    assert_eq!(info.dropped, vec![4]);
    assert!(
        info.entries_removed >= 1,
        "the entry 4 wrote and 5 replaced is read by no kept version"
    );
    assert_ne!(m4, m);
    assert_reads(&store, 3, &models[3]);
    assert_reads(&store, 5, &m);
    store.verify(3).expect("verify");
    store.verify(5).expect("verify");
    // Rolling back to 3 also removes what the dropped 4 wrote (5 read it until now).
    assert_eq!(store.rollback_to(Some(3)).expect("rollback"), vec![5]);
    let mut m = models[3].clone();
    let mut s = step(&store, 4, &mut m);
    s.put("count", 5, b"other", b"new-4");
    commit(&mut store, s, 4);
    assert_reads(&store, 4, &m);
    store.verify(4).expect("verify");
}

fn flip_all(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = fs::read(path).expect("read data.mdb");
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + needle.len() - 1] ^= 0x20;
            hits += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    fs::write(path, &bytes).expect("write data.mdb");
    hits
}

#[test]
fn flipped_bytes_are_detected_and_restore_falls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let [_, m2, _] = three_versions(&mut store);
    for n in 1..=3 {
        store.promote(n).expect("promote");
    }
    let data = store.path().join("data.mdb");
    drop(store);
    // A value only version 3 wrote.
    assert!(flip_all(&data, b"v3-21") >= 1);
    let store = open(dir.path());
    let e = store.verify(3).expect_err("damage found");
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.contains("checkpoint 3") && e.message.contains("checksum"),
        "{e}"
    );
    assert!(
        e.message.contains(&dir.path().display().to_string()),
        "names the path: {e}"
    );
    let latest = store.latest_valid_complete().expect("latest");
    assert_eq!(latest.checkpoint, Some(2));
    assert_eq!(latest.rejected.len(), 1);
    assert_eq!(latest.rejected[0].0, 3);
    assert_reads(&store, 2, &m2);
}

#[test]
fn tampered_entries_and_manifests_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    three_versions(&mut store);
    for n in 1..=3 {
        store.promote(n).expect("promote");
    }
    let dbs = store.dbs;
    let id = store.ops["count"];
    // Remove an entry that version 3 reads (written by version 1, never touched again).
    let mut prefix = id.to_be_bytes().to_vec();
    super::encoding::push_prefix(&mut prefix, 2, b"user-2");
    let mut k = Vec::new();
    super::encoding::data_key(&mut k, id, &prefix[4..], 1);
    store
        .write("tamper", 0, |txn| {
            assert!(dbs.data.delete(txn, &k)?);
            Ok(())
        })
        .expect("tamper");
    let e = store.verify(3).expect_err("missing entry found");
    assert!(e.message.contains("records where its manifest says"), "{e}");
    let latest = store.latest_valid_complete().expect("latest");
    assert_eq!(latest.checkpoint, None, "every version read that entry");
    assert_eq!(
        latest.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );

    // An altered value and a tampered manifest, in a fresh store.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    three_versions(&mut store);
    for n in 1..=3 {
        store.promote(n).expect("promote");
    }
    let dbs = store.dbs;
    let id = store.ops["join"];
    let mut k = Vec::new();
    let mut p = Vec::new();
    super::encoding::push_prefix(&mut p, 6, b"right");
    super::encoding::data_key(&mut k, id, &p, 2);
    store
        .write("tamper", 0, |txn| {
            dbs.data.put(txn, &k, b"\x00R9")?;
            Ok(())
        })
        .expect("tamper");
    assert!(store.verify(1).is_ok(), "version 1 does not read that key");
    let e = store.verify(3).expect_err("altered value found");
    assert!(
        e.message.contains("operator `join`") && e.message.contains("checksum"),
        "{e}"
    );
    store
        .write("tamper", 0, |txn| {
            let raw = dbs
                .versions
                .get(txn, &1u64.to_be_bytes())?
                .expect("version 1")
                .to_vec();
            let mut raw = raw;
            let last = raw.len() - 2;
            raw[last] ^= 1;
            dbs.versions.put(txn, &1u64.to_be_bytes(), &raw)?;
            Ok(())
        })
        .expect("tamper");
    let e = store.verify(1).expect_err("manifest damage found");
    assert!(e.message.contains("manifest"), "{e}");
}

#[test]
fn damaged_or_truncated_files_are_refused_with_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    three_versions(&mut store);
    let data = store.path().join("data.mdb");
    drop(store);
    let good = fs::read(&data).expect("read");

    // Both meta pages overwritten: heed refuses to open the file.
    let mut bad = good.clone();
    bad[..8192].fill(0xAB);
    fs::write(&data, &bad).expect("write");
    let e = CheckpointStore::open(dir.path(), 0).expect_err("refused");
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message
            .contains(&data.parent().expect("dir").display().to_string()),
        "{e}"
    );
    assert!(e.message.contains("damaged"), "{e}");

    // Truncated: the header is intact but pages are missing.
    fs::write(&data, &good[..good.len() / 2]).expect("write");
    let e = CheckpointStore::open(dir.path(), 0).expect_err("refused");
    assert!(
        e.message.contains("truncated") && e.message.contains("data.mdb"),
        "{e}"
    );

    // Restored, it opens again.
    fs::write(&data, &good).expect("write");
    let store = open(dir.path());
    store.verify(3).expect("verify");
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let e = CheckpointStore::open(&missing, 0).expect_err("missing");
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.contains(&missing.display().to_string()) && e.message.contains("does not exist"),
        "{e}"
    );
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    let e = CheckpointStore::open(&file, 0).expect_err("a file");
    assert!(e.message.contains("not a directory"), "{e}");
    // Worker slots are separate environments.
    let mut a = CheckpointStore::open(dir.path(), 0).expect("open 0");
    let b = CheckpointStore::open(dir.path(), 1).expect("open 1");
    let mut w = a.begin(1).expect("begin");
    w.put("count", 0, b"k", b"v");
    a.commit(w, &fields(1)).expect("commit");
    assert!(b.versions().expect("versions").is_empty());
    assert!(dir.path().join("worker-1").join("data.mdb").is_file());
}

#[test]
fn the_map_grows_for_a_checkpoint_larger_than_the_map() {
    for presize in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = CheckpointStore::open_at(dir.path(), Some(0), 1 << 20).expect("open");
        store.presize = presize;
        let start = store.stats().expect("stats").map_size;
        assert_eq!(start, 1 << 20);
        let mut m = Model::new();
        let mut s = step(&store, 1, &mut m);
        let value = vec![7u8; 1000];
        for i in 0..8_000u32 {
            s.put("count", i % 128, &i.to_be_bytes(), &value);
        }
        commit(&mut store, s, 1);
        let st = store.stats().expect("stats");
        assert!(
            st.file_bytes > 4 * start as u64,
            "the checkpoint ({} bytes) outgrew the map",
            st.file_bytes
        );
        assert!(st.map_size > start);
        if !presize {
            assert!(
                store.grows_on_full > 0,
                "LMDB reported the map full and the commit was retried"
            );
        }
        assert_reads(&store, 1, &m);
        store.verify(1).expect("verify");
    }
}

#[test]
fn long_keys_are_stored_by_hash_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let long_a = vec![b'a'; 2000];
    let long_b = vec![b'b'; 600];
    let mut m = Model::new();
    let mut s = step(&store, 1, &mut m);
    s.put("count", 1, &long_a, b"A1");
    s.put("count", 1, &long_b, b"B1");
    s.put("count", 1, b"short", b"S1");
    commit(&mut store, s, 1);
    let m1 = m.clone();
    let mut s = step(&store, 2, &mut m);
    s.put("count", 1, &long_a, b"A2");
    s.delete("count", 1, &long_b);
    commit(&mut store, s, 2);
    assert_reads(&store, 1, &m1);
    assert_reads(&store, 2, &m);
    store.verify(2).expect("verify");
}

#[test]
fn savepoints_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let [_, m2, _] = three_versions(&mut store);
    store.promote(1).expect("promote");
    store.promote(2).expect("promote");
    let dest = dir.path().join("savepoints").join("sp-2");
    let e = store.copy_to(3, &dest).expect_err("pending refused");
    assert!(e.message.contains("not complete"), "{e}");
    let manifest = store.copy_to(2, &dest).expect("copy");
    assert_eq!(manifest.checkpoint, 2);
    assert!(dest.join(MANIFEST_FILE).is_file() && dest.join("data.mdb").is_file());
    assert!(!dest.join("lock.mdb").exists());
    let e = store.copy_to(2, &dest).expect_err("exists");
    assert!(e.message.contains("already exists"), "{e}");
    let json: Manifest =
        serde_json::from_slice(&fs::read(dest.join(MANIFEST_FILE)).expect("read")).expect("json");
    assert_eq!(json, manifest);

    // Read back while the source keeps going (and is even dropped).
    let mut later = Model::new();
    let mut s = step(&store, 4, &mut later);
    s.put("count", 0, b"later", b"x");
    commit(&mut store, s, 4);
    drop(store);
    let sp = open_savepoint(&dest).expect("open savepoint");
    assert_eq!(sp.checkpoint(), 2);
    assert_eq!(sp.manifest(), &manifest);
    sp.verify().expect("verify");
    let r = sp.reader().expect("reader");
    let mut got = Model::new();
    for op in OPS {
        for e in r.scan(op, 0..u32::MAX).expect("scan") {
            let (kg, k, v) = e.expect("entry");
            got.insert((op.to_string(), kg, k.to_vec()), v.to_vec());
        }
    }
    assert_eq!(got, m2);
    assert_eq!(
        r.meta("source/orders").expect("meta"),
        Some(&b"offset=200"[..])
    );
    drop(r);
    drop(sp);

    // Not a savepoint / a damaged manifest.json.
    let e = open_savepoint(dir.path()).expect_err("not a savepoint");
    assert!(e.message.contains("manifest.json"), "{e}");
    let mut other = manifest.clone();
    other.epoch += 1;
    fs::write(
        dest.join(MANIFEST_FILE),
        serde_json::to_vec(&other).expect("json"),
    )
    .expect("write");
    let e = open_savepoint(&dest).expect_err("disagree");
    assert!(e.message.contains("disagree"), "{e}");
}

#[test]
fn a_damaged_version_is_not_copied_to_a_savepoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    three_versions(&mut store);
    store.promote(3).expect("promote");
    let dbs = store.dbs;
    let id = store.ops["join"];
    let mut p = Vec::new();
    super::encoding::push_prefix(&mut p, 6, b"right");
    let mut k = Vec::new();
    super::encoding::data_key(&mut k, id, &p, 2);
    store
        .write("tamper", 0, |txn| {
            dbs.data
                .put_with_flags(txn, PutFlags::empty(), &k, b"\x00tampered")?;
            Ok(())
        })
        .expect("tamper");
    let dest = dir.path().join("sp");
    let e = store.copy_to(3, &dest).expect_err("refused");
    assert!(e.message.contains("no savepoint was written"), "{e}");
    assert!(!dest.exists());
    assert!(!dir.path().join("sp.partial").exists());
}

/// Not a benchmark with assertions on time: prints how long one checkpoint of many dirty keys
/// (8-byte keys, 16-byte values) takes, first as new keys, then rewriting all of them. CI runs
/// 50 000 keys; `WEIR_STATE_TIMING_KEYS=1000000` gives the figure in BENCHMARKS.md.
#[test]
fn timing_many_dirty_keys() {
    let n: u32 = std::env::var("WEIR_STATE_TIMING_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    for round in 1..=2u64 {
        let t0 = Instant::now();
        let mut w = store.begin(round).expect("begin");
        for i in 0..n {
            let key = u64::from(i)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_be_bytes();
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&round.to_le_bytes());
            value[8..12].copy_from_slice(&i.to_le_bytes());
            w.put("count", i % 128, &key, &value);
        }
        let buffered = t0.elapsed();
        let info = store.commit(w, &fields(round)).expect("commit");
        let total = t0.elapsed();
        store.promote(round).expect("promote");
        let t1 = Instant::now();
        let kept = store.retain(1).expect("retain");
        let retain = t1.elapsed();
        let st = store.stats().expect("stats");
        println!(
            "checkpoint {round}: {n} dirty keys ({}): buffer {:?}, commit {:?}, total {:?} ({:.0} keys/s); \
             retain {:?} removed {}; data entries {}, data.mdb {} MiB",
            if round == 1 { "new" } else { "all rewritten" },
            buffered,
            total - buffered,
            total,
            f64::from(n) / total.as_secs_f64(),
            retain,
            kept.entries_removed,
            st.data_entries,
            st.file_bytes >> 20
        );
        assert_eq!(info.puts, u64::from(n));
    }
    let t = Instant::now();
    store.verify(2).expect("verify");
    println!("verify of {n} keys: {:?}", t.elapsed());
}
