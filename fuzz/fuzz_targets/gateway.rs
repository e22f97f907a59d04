//! The rooms gateway (`wsreactor::gateway::Gateway`) driven by random
//! client requests from four connections, JSON and Protobuf, valid and
//! not, against a model: no panic; every frame it sends decodes in the
//! connection's encoding; seq goes up by one per message in each room; a
//! publish reaches exactly the room's members, once each, with the
//! publisher's name and data; joins answer with the room's seq and replay
//! exactly the messages after `since` when recovered; leave, publish and
//! presence outside a room are `not_joined`; presence lists the members'
//! users; membership matches the model after every step and nothing is
//! left once everyone closed. Layout in fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wsreactor_fuzz::gateway::drive_gateway(data);
});
