//! Windows firewall rule exports (`Get-NetFirewallRule … | ConvertTo-Json`, UTF-8 or UTF-16)
//! on arbitrary bytes, and the rule predicates on whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rules) = probes::hostfw::windows::parse(data) {
        for r in &rules {
            let _ = r.on_interface("wt0");
            let _ = r.names_interface("wt0");
            let _ = r.is_program("netbird.exe");
            let _ = r.all_traffic();
        }
    }
});
