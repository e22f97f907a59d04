//! A client-role `Connection` (masking its output with keys from a seed)
//! fed arbitrary bytes and frames with application actions interleaved; see
//! `wsreactor_fuzz::drive_connection`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::Role;

fuzz_target!(|data: &[u8]| wsreactor_fuzz::drive_connection(Role::Client, data));
