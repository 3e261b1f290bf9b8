//! `stunmap check`: the whole probe on a profile. [`run`] orchestrates the sections
//! concurrently under a shared deadline, [`verdict`] judges, [`model`] is the report every
//! renderer (`crate::report`) reads.

pub(crate) mod model;
pub(crate) mod run;
pub(crate) mod verdict;
