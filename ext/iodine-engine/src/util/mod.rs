//! Small helpers that need no connection: URL percent-decoding ([`url`]) and HTTP dates
//! ([`date`]). They back `Iodine::Rack::Utils` and `Iodine.patch_rack`.

pub mod date;
pub mod url;
