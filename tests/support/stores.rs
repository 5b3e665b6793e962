//! The object stores of the test bed (moto S3, azurite): their URLs, `--target-setting` values
//! with the secrets in files, and what they hold, read with their own clients
//! (tests/testbed/objstore_probe.py).

use std::process::Command;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Store {
    S3,
    Azure,
}

impl Store {
    pub fn container(self) -> &'static str {
        let tb = crate::common::testbed();
        match self {
            Store::S3 => tb.var("LSB_S3_BUCKET"),
            Store::Azure => tb.var("LSB_AZURE_CONTAINER"),
        }
    }
    pub fn url(self, prefix: &str) -> String {
        match self {
            Store::S3 => format!("s3://{}/{prefix}", self.container()),
            Store::Azure => format!("az://{}/{prefix}", self.container()),
        }
    }
    /// `--target-setting` values, secrets in files under `dir`.
    pub fn settings(self, dir: &std::path::Path) -> Vec<String> {
        let tb = crate::common::testbed();
        let file = |name: &str, value: &str| {
            let p = dir.join(name);
            std::fs::write(&p, value).unwrap();
            p.display().to_string()
        };
        match self {
            Store::S3 => vec![
                format!(
                    "aws_access_key_id=file:{}",
                    file("id", tb.var("LSB_S3_ACCESS_KEY_ID"))
                ),
                format!(
                    "aws_secret_access_key=file:{}",
                    file("secret", tb.var("LSB_S3_SECRET_ACCESS_KEY"))
                ),
                format!("aws_endpoint_url={}", tb.var("LSB_S3_ENDPOINT")),
                format!("aws_region={}", tb.var("LSB_S3_REGION")),
            ],
            Store::Azure => vec![format!(
                "azure_storage_connection_string=file:{}",
                file("cs", tb.var("LSB_AZURE_CONNECTION_STRING"))
            )],
        }
    }
    pub fn probe(self, what: &str, prefix: &str) -> Vec<String> {
        let tb = crate::common::testbed();
        let (cmd, key) = match (self, what) {
            (Store::S3, "objects") => ("s3-objects", "key"),
            (Store::S3, _) => ("s3-uploads", "key"),
            (Store::Azure, "objects") => ("az-blobs", "name"),
            (Store::Azure, _) => ("az-uncommitted", "name"),
        };
        let out = Command::new(tb.var("LSB_OBJSTORE_PYTHON"))
            .arg(tb.var("LSB_OBJSTORE_PROBE"))
            .args([cmd, self.container(), &format!("{prefix}/")])
            .env("LSB_TESTBED", tb.dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o[key]
                    .as_str()
                    .unwrap()
                    .trim_start_matches(&format!("{prefix}/"))
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }
    /// Committed objects under `prefix`.
    pub fn objects(self, prefix: &str) -> Vec<String> {
        self.probe("objects", prefix)
    }
    /// S3 multipart uploads, Azure blobs with uncommitted blocks, under `prefix`.
    pub fn unfinished(self, prefix: &str) -> Vec<String> {
        self.probe("unfinished", prefix)
    }
    pub fn empty(self, prefix: &str) {
        let tb = crate::common::testbed();
        let cmd = match self {
            Store::S3 => "s3-empty",
            Store::Azure => "az-empty",
        };
        let _ = Command::new(tb.var("LSB_OBJSTORE_PYTHON"))
            .arg(tb.var("LSB_OBJSTORE_PROBE"))
            .args([cmd, self.container(), &format!("{prefix}/")])
            .env("LSB_TESTBED", tb.dir())
            .output();
    }
}
