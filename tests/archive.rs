//! The archive writer and the local target together, through the public API only, the way the
//! engine uses them: create `NAME.partial`, stream the archive into it, commit or abort.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use lsbackup::archive::{
    ArchiveWriter, ComponentReport, EntryMeta, Format, HostReport, InventoryInfo, MANIFEST_FORMAT,
    Manifest, Status, ToolInfo, WriterOptions, read_manifest, verify_archive,
};
use lsbackup::target::Target;

fn manifest(format: Format, name: &str, entries: Vec<lsbackup::archive::EntryRecord>) -> Manifest {
    Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: lsbackup::VERSION.into(),
        },
        started_at: "2026-11-25T01:39:04Z".into(),
        finished_at: "2026-11-25T01:39:05Z".into(),
        build_dir: "/build".into(),
        archive_name: name.into(),
        archive_format: format,
        status: Status::Ok,
        inventory: InventoryInfo {
            path: "/build/inventory".into(),
            groups: BTreeMap::new(),
            hosts: BTreeMap::from([("node3".to_string(), "127.0.0.4:2222".to_string())]),
        },
        selection: vec!["haproxy".into()],
        host_key_checking: String::new(),
        components: vec![ComponentReport {
            name: "haproxy".into(),
            description: "HAProxy configuration".into(),
            groups: vec!["haproxy".into()],
            status: Status::Ok,
            hosts: vec![HostReport {
                host: "node3".into(),
                address: "127.0.0.4:2222".into(),
                role: "first reachable".into(),
                status: Status::Ok,
                versions: BTreeMap::new(),
                commands: vec![],
                entries: entries.into(),
                flags: vec![],
                errors: vec![],
            }],
            errors: vec![],
        }],
        archive: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_into_a_local_target_then_verify() {
    for format in [Format::TarZst, Format::TarGz, Format::Zip] {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::parse(dir.path().to_str().unwrap()).unwrap();
        target.check().await.unwrap();
        let mut upload = target
            .create("lsbackup-20261125T013904Z", format.extension())
            .await
            .unwrap();
        let writer = ArchiveWriter::new(upload.writer(), WriterOptions::new(format))
            .await
            .unwrap();
        let sink = writer.sink();
        let cfg = b"global\n  maxconn 4096\n".to_vec();
        let mut recs = vec![
            sink.add_dir("haproxy/node3/etc/haproxy", 0o755, 1_700_000_000)
                .await
                .unwrap(),
        ];
        let meta = EntryMeta {
            path: "haproxy/node3/etc/haproxy/haproxy.cfg".into(),
            size: cfg.len() as u64,
            mode: 0o644,
            mtime: 1_700_000_000,
        };
        recs.push(sink.add_sized(meta, cfg.as_slice()).await.unwrap());
        recs.push(
            sink.add_stream("haproxy/node3/version.txt", 0o600, &b"2.6.12\n"[..])
                .await
                .unwrap(),
        );
        let name = upload.name.clone();
        writer.finish(&manifest(format, &name, recs)).await.unwrap();
        let location = upload.commit().await.unwrap();

        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![name.clone()],
            "{format}: only the final archive is left"
        );
        let mode = std::fs::metadata(&location).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{format}");
        let report = verify_archive(&location).await.unwrap();
        assert!(report.is_ok(), "{format}: {report:#?}");
        assert_eq!(report.entries, 3);
        let m = read_manifest(&location).await.unwrap();
        assert_eq!(m.archive_name, name);
    }
}

#[tokio::test]
async fn an_interrupted_backup_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());
    let mut upload = target.create("lsbackup-x", "tar.zst").await.unwrap();
    let writer = ArchiveWriter::new(upload.writer(), WriterOptions::new(Format::TarZst))
        .await
        .unwrap();
    let sink = writer.sink();
    sink.add_stream("c/h/a", 0o600, &vec![1u8; 1 << 20][..])
        .await
        .unwrap();
    assert!(upload.partial_path().unwrap().exists());
    // What the engine does on Ctrl-C: drop the writer, abort the upload.
    drop(writer);
    upload.abort().await;
    assert!(sink.add_stream("c/h/b", 0o600, &b"late"[..]).await.is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
