#![no_main]
//! `lsbackup::fuzzing::archive` (see docs/fuzzing.md).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lsbackup::fuzzing::archive(data);
});
