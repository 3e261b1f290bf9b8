//! STUN over TCP.
