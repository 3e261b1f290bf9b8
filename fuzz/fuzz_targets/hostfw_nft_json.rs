//! `nft -j list ruleset` JSON (host input: `stunmap host --nft-json FILE`) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = probes::hostfw::nft_json::parse(&text);
});
