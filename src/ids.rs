//! Transaction ids for every command. `probes` draws no randomness: its
//! [`TransactionIdSource`] derives ids from a seed, and this is the one place the CLI draws that
//! seed.

use probes::stun::{TransactionId, TransactionIdSource};
use rand::RngCore;

/// A fresh source of transaction ids, seeded with 128 bits from the OS-seeded thread RNG.
pub(crate) fn source() -> TransactionIdSource {
    let mut seed = [0u8; 16];
    rand::rng().fill_bytes(&mut seed);
    TransactionIdSource::new(seed)
}

/// One transaction id, for a single request.
pub(crate) fn one() -> TransactionId {
    source().next_id()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sources_are_seeded_apart() {
        let (mut a, mut b) = (super::source(), super::source());
        assert_ne!(a.next_id(), b.next_id());
        assert_ne!(super::one(), super::one());
    }
}
