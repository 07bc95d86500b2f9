//! Event decoding for every source format: JSON bodies and lines, text, the original
//! router's messages, Prefect events posted to a webhook, CloudEvents (structured and batch).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sources::stdin::StdinFormat;
use switchyard::sources::{PayloadFormat, parse_json, stdin, undecodable, webhook};

fuzz_target!(|data: &[u8]| {
    let _ = PayloadFormat::Json.decode(data);
    let _ = PayloadFormat::Text.decode(data);
    let _ = undecodable(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = stdin::parse(StdinFormat::Json, text);
        let _ = stdin::parse(StdinFormat::PrefectEventRouter, text);
    }
    if let Ok(v) = parse_json(data) {
        let _ = switchyard::cloudevents::CloudEvent::from_structured(v.clone())
            .map(|ce| (ce.labels(), ce.to_prefect_event()));
        let _ = switchyard::cloudevents::CloudEvent::batch(v.clone());
        if let Ok(b) = webhook::prefect_event("hook", v) {
            let _ = b.build();
        }
    }
});
