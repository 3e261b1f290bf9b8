//! HTTP response heads (peer input: relay WebSocket upgrade, CONNECT proxies) on arbitrary
//! bytes, plus proxy URLs, NO_PROXY matching and page titles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::control::http;
use probes::wire::http::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_head(data) {
        let _ = head.header("upgrade");
        let _ = head.header("sec-websocket-accept");
        let _ = http::ws_verdict(&head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", data);
        let _ = http::connect_verdict(&head);
    }
    let _ = http::page_title(data);
    let text = String::from_utf8_lossy(data);
    let _ = http::ProxyUrl::parse(&text);
    if let Some((a, b)) = text.split_once('\n') {
        let _ = http::no_proxy_matches(a, b);
    }
});
