//! Full decoding through `stun_codec` (placeholder until the differential work lands).
