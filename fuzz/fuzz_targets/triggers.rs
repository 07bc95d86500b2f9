//! The trigger machine under random events and clock moves: each byte pair is an operation
//! (an event of one of a few names and keys, a clock step, a tick). Whatever the sequence,
//! windows, deadlines and batches never panic (time arithmetic included).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard::config::triggers::{BatchConfig, TriggerConfig};
use switchyard::triggers::{Bucket, Machine};

const SPECS: [&str; 6] = [
    "{type: event, expect: [a], threshold: 3, within: 60, for_each: [key]}",
    "{type: event, expect: [b], after: [a], posture: Proactive, threshold: 1, within: 30}",
    "{type: event, expect: ['*'], threshold: 2, within: 315576000}",
    "{type: compound, require: 2, within: 120, key: '{{ event.payload.k }}', triggers: [{type: event, expect: [a]}, {type: event, expect: [b]}, {type: event, expect: [c], when: 'event.payload.n > 2'}]}",
    "{type: sequence, within: 90, triggers: [{type: event, expect: [a]}, {type: event, expect: [b]}]}",
    "{type: event, posture: Proactive, expect: [c], threshold: 2, within: 1}",
];

fn machines() -> &'static Vec<Machine> {
    static M: OnceLock<Vec<Machine>> = OnceLock::new();
    M.get_or_init(|| {
        let mut all: Vec<Machine> = SPECS
            .iter()
            .map(|s| {
                let t: TriggerConfig = serde_norway::from_str(s).expect("trigger spec");
                Machine::compile(Some(&t), None).expect("compiles").expect("machine")
            })
            .collect();
        for b in ["{max_events: 3, max_delay: 10}", "{max_events: 100, max_delay: 315576000, idle: 5, key: '{{ event.payload.k }}'}"] {
            let b: BatchConfig = serde_norway::from_str(b).expect("batch spec");
            all.push(Machine::compile(None, Some(&b)).expect("compiles").expect("machine"));
        }
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let all = machines();
    let machine = &all[usize::from(which) % all.len()];
    let mut buckets: BTreeMap<String, Bucket> = BTreeMap::new();
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let mut now = start;
    machine.start(&mut buckets, now);
    for op in ops.chunks(2) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        match code % 4 {
            0 | 1 => {
                let name = ["a", "b", "c", "d"][usize::from(arg % 4)];
                let event = switchyard_core::Event::builder(
                    "src",
                    name,
                    serde_json::json!({"k": arg % 3, "n": arg}),
                )
                .label("key", (arg % 2).to_string())
                .build();
                if let Ok(judged) = machine.judge(&event) {
                    let _ = machine.on_event("r", &mut buckets, &event, judged, now);
                }
            }
            2 => {
                // Steps from a millisecond to years.
                let step = chrono::Duration::milliseconds(1i64 << (arg % 40));
                now = now.checked_add_signed(step).unwrap_or(now);
            }
            _ => {
                let _ = machine.tick("r", &mut buckets, now);
            }
        }
        let _ = machine.next_deadline(&buckets);
        buckets.retain(|_, b| !Machine::idle(b));
    }
});
