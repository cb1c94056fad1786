//! Opening a store folder: creation, locking against a second opener,
//! corrupt files refused with a clear error and left untouched, backend
//! mismatch, `hash_size`.

mod store_common;

use myqtt_core::store::{BackendKind, RedbStore, Store, StoreConfig, StoreError};
use store_common::TempDir;

#[test]
fn open_creates_the_folder_and_its_files() {
    let dir = TempDir::new("create");
    let path = dir.path().join("nested/store");
    let store = RedbStore::open(&path).expect("open");
    assert_eq!(store.backend_name(), "redb");
    assert!(path.join("store.redb").is_file());
    assert!(path.join("LOCK").is_file());
}

#[test]
fn a_second_open_of_the_same_store_is_refused_with_a_clear_error() {
    let dir = TempDir::new("double");
    let first = RedbStore::open(dir.path()).expect("first open");
    let err = RedbStore::open(dir.path()).expect_err("second open must fail");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("already open"), "{text}");
    assert!(
        text.contains(&std::process::id().to_string()),
        "names the holder: {text}"
    );
    drop(first);
    RedbStore::open(dir.path()).expect("open again once the first is closed");
}

#[test]
fn a_garbage_database_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("garbage");
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    let file = dir.path().join("store.redb");
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &garbage).expect("write garbage");
    let err = RedbStore::open(dir.path()).expect_err("garbage must not open");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(
        std::fs::read(&file).expect("read back"),
        garbage,
        "never wiped"
    );
}

#[test]
fn a_store_path_that_is_a_file_is_refused() {
    let dir = TempDir::new("file");
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    let path = dir.path().join("not-a-folder");
    std::fs::write(&path, b"data").expect("write");
    let err = RedbStore::open(&path).expect_err("a file is not a store");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).expect("read"), b"data");
}

#[test]
fn a_redb_file_of_another_program_is_not_taken_for_a_store() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    {
        let db = redb_foreign::create(&dir.path().join("store.redb"));
        drop(db);
    }
    let err = RedbStore::open(dir.path()).expect_err("no format marker");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a myqtt store"), "{err}");
}

/// Writes a redb database with a table of its own, as another program
/// would.
mod redb_foreign {
    pub fn create(path: &std::path::Path) -> redb::Database {
        let table: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("myqtt");
        let db = redb::Database::create(path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(table)
            .expect("table")
            .insert(&b"key"[..], &b"value"[..])
            .expect("insert");
        txn.commit().expect("commit");
        db
    }
}

#[test]
fn hash_size_sets_the_cache_in_pages_of_four_kib() {
    let config = StoreConfig::new("unused");
    assert_eq!(config.cache_bytes(), 8192 * 4096, "0 means the default");
    assert_eq!(
        config.clone().hash_size(4096).cache_bytes(),
        16 * 1024 * 1024
    );
}

#[test]
fn the_config_opens_the_backend_it_names() {
    let dir = TempDir::new("config");
    let store = StoreConfig::new(dir.path())
        .hash_size(256)
        .open()
        .expect("open");
    assert_eq!(store.backend_name(), "redb");
}

#[cfg(not(feature = "sled"))]
#[test]
fn sled_without_its_feature_is_a_clear_error() {
    let dir = TempDir::new("nosled");
    let err = StoreConfig::new(dir.path())
        .backend(BackendKind::Sled)
        .open()
        .expect_err("not built");
    assert!(
        matches!(err, StoreError::BackendUnavailable("sled")),
        "{err:?}"
    );
}

#[cfg(feature = "sled")]
mod sled {
    use super::*;
    use myqtt_core::store::SledStore;

    #[test]
    fn a_second_open_of_a_sled_store_is_refused() {
        let dir = TempDir::new("sled-double");
        let _first = SledStore::open(dir.path()).expect("first open");
        let err = SledStore::open(dir.path()).expect_err("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    }

    #[test]
    fn a_folder_of_one_backend_is_not_opened_with_the_other() {
        let dir = TempDir::new("mixed");
        drop(RedbStore::open(dir.path()).expect("redb"));
        let err = StoreConfig::new(dir.path())
            .backend(BackendKind::Sled)
            .open()
            .expect_err("mismatch");
        assert!(
            matches!(
                err,
                StoreError::WrongBackend {
                    found: "redb",
                    wanted: "sled",
                    ..
                }
            ),
            "{err:?}"
        );
        drop(StoreConfig::new(dir.path()).open().expect("redb again"));
    }

    #[test]
    fn a_garbage_sled_folder_is_refused_and_left_untouched() {
        let dir = TempDir::new("sled-garbage");
        let sled_dir = dir.path().join("sled");
        std::fs::create_dir_all(&sled_dir).expect("mkdir");
        let garbage = vec![0xA5u8; 4096];
        std::fs::write(sled_dir.join("conf"), &garbage).expect("write");
        std::fs::write(sled_dir.join("db"), &garbage).expect("write");
        let err = SledStore::open(dir.path()).expect_err("garbage must not open");
        assert!(
            matches!(err, StoreError::Corrupt { .. } | StoreError::Open { .. }),
            "{err:?}"
        );
        assert_eq!(std::fs::read(sled_dir.join("conf")).expect("read"), garbage);
        assert_eq!(std::fs::read(sled_dir.join("db")).expect("read"), garbage);
    }
}
